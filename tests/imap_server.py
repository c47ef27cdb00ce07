"""A real IMAP server for tests: Debian's dovecot, started on a free loopback port with its
whole configuration, passwd file and maildirs in a temporary folder (no system service).

In CI (``CI=true``) a missing dovecot fails the test instead of skipping it: ``.ci/run``
installs ``dovecot-imapd``.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port

USER, PASSWORD = "bounces", "imap-test-password"


@dataclass(frozen=True)
class IMAPServer:
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        client = self.client()
        try:
            status, _ = client.append(folder, None, None, raw)
            assert status == "OK"
        finally:
            client.logout()

    def count(self, folder: str) -> int:
        client = self.client()
        try:
            status, data = client.select(f'"{folder}"', readonly=True)
            return int(data[0] or 0) if status == "OK" else 0
        finally:
            client.logout()


def dovecot_binary() -> str:
    found = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
    )
    if found is None:
        message = "dovecot is not installed: apt-get install dovecot-imapd"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


CONFIG = """\
base_dir = {data}/run
state_dir = {data}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{data}/mail/%u
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {login_user}
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 0
first_valid_gid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={data}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@contextmanager
def dovecot(root: Path) -> Iterator[IMAPServer]:
    """Start dovecot with its config and log in ``root``. Its sockets, state and maildirs
    live in a private folder its unprivileged processes can reach (linked from ``root`` as
    ``data``): pytest keeps its own folders at mode 0700 and resets them to it whenever
    another pytest session starts."""
    binary = dovecot_binary()
    root.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    (root / "data").symlink_to(data)
    try:
        with _running(binary, root, data) as server:
            yield server
    finally:
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def _running(binary: str, root: Path, data: Path) -> Iterator[IMAPServer]:
    for sub in ("run", "state", "mail", "home"):
        (data / sub).mkdir()
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = free_port()
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    uid, gid = os.getuid(), os.getgid()
    login_user = user
    if uid == 0:  # dovecot never runs mail processes as root: use ``nobody``
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
        login_user = "dovenull" if _has_user("dovenull") else "nobody"
        os.chmod(data, 0o711)  # noqa: S103 - traverse only, nothing listable
        for sub in ("mail", "home"):
            os.chown(data / sub, uid, gid)
    config = root / "dovecot.conf"
    config.write_text(
        CONFIG.format(
            root=root,
            data=data,
            port=port,
            uid=uid,
            gid=gid,
            user=user,
            group=group,
            login_user=login_user,
        )
    )
    process = subprocess.Popen(
        [binary, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(port, process, root)
        yield IMAPServer(port, root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _wait_for(port: int, process: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
            raise RuntimeError(f"dovecot exited: {output}\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("dovecot did not listen within 15 s")
