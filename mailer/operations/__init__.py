"""What operators (and the CRM's code) do: create campaigns (:mod:`.authoring`), start, signal
and watch them (:mod:`.control`, :mod:`.watch`), manage users and the account
(:mod:`.accounts`), proof emails (:mod:`.proofs`), the suppression list and unsubscribes."""
