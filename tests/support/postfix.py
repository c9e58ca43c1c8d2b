"""A real Postfix (Debian's package) for the tests, as a provider's relay looks to mailer.

Its own instance in a throwaway directory: submission on a free loopback port with STARTTLS
(a certificate from the test's private CA) and SASL AUTH (Cyrus, a sasldb with one user) only
after STARTTLS, SMTPUTF8 on, everything relayed to the test's sink (the "internet"), and the
delivery reports it writes for ``sender_domain`` handed to mailer's receiver — the way a
real relay returns a bounce that happened after it accepted the message.

Postfix's master runs as root and its daemons as the ``postfix`` user, so this needs root (CI
runs as root and `.ci/run` installs the packages); elsewhere the tests skip, in CI they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from mailer.stack.throwaway import free_port

SBIN = "/usr/sbin"
USERNAME = "mailer@relay.test"
PASSWORD = "relay-password-1"
HOSTNAME = "mx.relay.test"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = relay.test
myorigin = $mydomain
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file_prefixes = {root}
maillog_file = {root}/postfix.log
smtputf8_enable = {smtputf8}
smtpd_tls_chain_files = {root}/server.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {root}/conf/sasl
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
relayhost = [127.0.0.1]:{relay_port}
smtp_tls_security_level = none
transport_maps = {transport_maps}
smtpd_recipient_restrictions = {recipient_restrictions}
smtpd_data_restrictions = {data_restrictions}
"""

SASL_CONF = """\
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: {root}/sasldb2
"""

# No chroot (column 5 "n"): the throwaway directory has none of a chroot's copies.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    port: int
    ca: trustme.CA
    log: Path

    @property
    def ca_pem(self) -> str:
        return self.ca.cert_pem.bytes().decode()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def require_postfix() -> None:
    """Skip (fail in CI) unless Debian's postfix and sasl2-bin are installed and we are root."""
    missing = [tool for tool in ("postfix", "saslpasswd2") if not Path(SBIN, tool).exists()]
    problem = (
        f"Debian packages missing: {', '.join(missing)} (postfix, sasl2-bin)"
        if missing
        else ("Postfix's master must run as root" if os.geteuid() != 0 else "")
    )
    if problem:
        # CI installs them and runs as root (.ci/run): there the tests must run, not skip.
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


GREYLISTED = "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again later"


class Greylister:
    """A Postfix policy service (the policy delegation protocol postgrey speaks): the first
    try of each (client, sender, recipient) is deferred with ``action`` (a 450 by default, as
    postgrey's), and so is every retry until ``delay_seconds`` have passed on ``clock``.
    ``only_first``: greylist only that many recipients, pass the rest at once (a list whose
    first few live at a greylisting domain). ``refuse_all``: answer every recipient with
    ``action`` (a provider's rate limit)."""

    def __init__(
        self,
        *,
        action: str = GREYLISTED,
        only_first: int | None = None,
        delay_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
        refuse_all: bool = False,
    ) -> None:
        self.action = action
        self.only_first = only_first
        self.delay_seconds = delay_seconds
        self.clock = clock
        self.refuse_all = refuse_all
        self.first_seen: dict[tuple[str, str, str], float] = {}
        self.deferred = 0
        self.greylisted: list[str] = []  # recipients, in the order first greylisted
        greylister = self

        class Policy(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request: dict[str, str] = {}
                for raw in self.rfile:
                    line = raw.decode().rstrip("\r\n")
                    if line:
                        name, _, value = line.partition("=")
                        request[name] = value
                        continue
                    self.wfile.write(f"action={greylister.decide(request)}\n\n".encode())
                    request = {}

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Policy)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def decide(self, request: dict[str, str]) -> str:
        recipient = request["recipient"]
        triplet = (request.get("client_address", ""), request.get("sender", ""), recipient)
        with self._lock:
            if self.refuse_all:
                self.deferred += 1
                return self.action
            first = self.first_seen.get(triplet)
            if first is None:
                if self.only_first is not None and len(self.greylisted) >= self.only_first:
                    return "DUNNO"
                self.first_seen[triplet] = self.clock()
                self.greylisted.append(recipient)
            elif self.clock() - first >= self.delay_seconds:
                return "DUNNO"
            self.deferred += 1
            return self.action

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _access_map(root: Path, name: str, entries: dict[str, str]) -> str:
    """A ``check_recipient_access`` on a texthash map of ``entries`` (no postmap needed)."""
    path = root / f"{name}_access"
    path.write_text("".join(f"{address} {action}\n" for address, action in entries.items()))
    return f"check_recipient_access texthash:{path}"


@contextmanager
def running_postfix(
    *,
    relay_port: int,
    sender_domain: str = "",
    inbound_port: int = 0,
    policy_port: int = 0,
    smtputf8: bool = True,
    recipient_access: dict[str, str] | None = None,
    data_access: dict[str, str] | None = None,
) -> Iterator[Postfix]:
    """Postfix relaying to ``relay_port``; its reports to ``sender_domain`` go to
    ``inbound_port`` (when given); every recipient is checked with the policy service on
    ``policy_port`` (when given); SMTPUTF8 offered or not. Stopped and removed when the block
    ends. ``recipient_access`` answers RCPT TO for the addresses it names (``"550 5.1.1 …"``,
    ``"451 4.2.2 …"``: Postfix's access map), ``data_access`` answers DATA for a transaction
    whose one recipient it names."""
    require_postfix()
    # Not under pytest's tmp_path: the postfix user must be able to reach the queue.
    root = Path(tempfile.mkdtemp(prefix="mailer-postfix-"))
    root.chmod(0o755)
    port = free_port()
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", HOSTNAME).private_key_and_cert_chain_pem.write_to_path(
        root / "server.pem"
    )
    (root / "server.pem").chmod(0o600)  # read by the master, as root
    transport = (
        f"inline:{{{sender_domain}=smtp:[127.0.0.1]:{inbound_port}}}"
        if sender_domain and inbound_port
        else ""
    )
    (root / "conf" / "sasl").mkdir(parents=True)
    (root / "queue").mkdir()
    (root / "data").mkdir()
    shutil.chown(root / "data", "postfix")
    restrictions = f"check_policy_service inet:127.0.0.1:{policy_port}" if policy_port else "permit"
    if recipient_access:
        restrictions = f"{_access_map(root, 'rcpt', recipient_access)}, {restrictions}"
    data_restrictions = _access_map(root, "data", data_access) if data_access else ""
    (root / "conf" / "main.cf").write_text(
        MAIN_CF.format(
            root=root,
            hostname=HOSTNAME,
            relay_port=relay_port,
            transport_maps=transport,
            recipient_restrictions=restrictions,
            data_restrictions=data_restrictions,
            smtputf8="yes" if smtputf8 else "no",
        )
    )
    (root / "conf" / "master.cf").write_text(MASTER_CF.format(port=port))
    (root / "conf" / "sasl" / "smtpd.conf").write_text(SASL_CONF.format(root=root))
    user, realm = USERNAME.split("@")
    subprocess.run(
        [f"{SBIN}/saslpasswd2", "-p", "-c", "-f", str(root / "sasldb2"), "-u", realm, user],
        input=PASSWORD.encode(),
        check=True,
    )
    shutil.chown(root / "sasldb2", "postfix")  # smtpd checks passwords as the postfix user
    config = ["-c", str(root / "conf")]
    postfix = Postfix(port, ca, root / "postfix.log")
    try:
        subprocess.run([f"{SBIN}/postfix", *config, "start"], check=True, capture_output=True)
        _wait_for_port(port, postfix)
        yield postfix
    finally:
        subprocess.run([f"{SBIN}/postfix", *config, "stop"], capture_output=True)
        _wait_for_master_to_exit(root / "queue" / "pid" / "master.pid")
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(port: int, postfix: Postfix, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"postfix did not listen on {port}:\n{postfix.log_text()}")


def _wait_for_master_to_exit(pid_file: Path, timeout: float = 15) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
