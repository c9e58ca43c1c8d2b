"""The ground floor every other floor may import: settings, errors, JSON for output, process
exit codes, reachability notes, and the Temporal client. Nothing here knows about campaigns."""
