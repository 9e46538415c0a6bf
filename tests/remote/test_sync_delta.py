"""Delta sync over a real sshd: only changes travel, each lands whole, ignores honoured."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from remote.errors import RemoteError, RemotePathRefused
from remote.ssh import SSHRunner
from remote.sync import MANIFEST_NAME, IgnoreRules, sync_dir


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _remote_files(remote: Path) -> dict[str, bytes]:
    return {p.relative_to(remote).as_posix(): p.read_bytes() for p in remote.rglob("*")
            if p.is_file() and p.name != MANIFEST_NAME}


@pytest.fixture
def runner(target):
    with SSHRunner(target) as r:
        yield r


@pytest.mark.parametrize("use_openssh", [False, True], ids=["paramiko", "openssh"])
def test_first_sync_sends_everything_and_second_sends_nothing(runner, tmp_path, remote_dir, use_openssh):
    local = tmp_path / "local"
    files = {"a.txt": b"alpha\n", "data/btc.parquet": os.urandom(300_000), "data/deep/x.bin": b"x" * 10}
    _tree(local, files)
    first = sync_dir(runner, local, str(remote_dir), use_openssh=use_openssh, cache_dir=tmp_path / "cache")
    assert (first.files_sent, first.bytes_sent, first.files_skipped) == (3, sum(map(len, files.values())), 0)
    assert _remote_files(remote_dir) == files
    second = sync_dir(runner, local, str(remote_dir), cache_dir=tmp_path / "cache")
    assert (second.files_sent, second.bytes_sent, second.files_skipped, second.transport) == (0, 0, 3, "none")
    manifest = json.loads((remote_dir / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == set(files)


def test_only_changed_files_travel_and_delete_removes_only_synced_files(runner, tmp_path, remote_dir):
    local = tmp_path / "local"
    _tree(local, {"keep.txt": b"same", "change.txt": b"old", "gone.txt": b"bye"})
    sync_dir(runner, local, str(remote_dir))
    (remote_dir / "made-on-host.log").write_text("not ours")
    (local / "change.txt").write_bytes(b"new")  # same size, different content
    (local / "gone.txt").unlink()
    (local / "added.txt").write_bytes(b"hello")
    report = sync_dir(runner, local, str(remote_dir), delete=True)
    assert (report.files_sent, report.files_skipped, report.files_deleted) == (2, 1, 1)
    assert _remote_files(remote_dir) == {"keep.txt": b"same", "change.txt": b"new", "added.txt": b"hello",
                                         "made-on-host.log": b"not ours"}


def test_file_removed_on_host_is_sent_again(runner, tmp_path, remote_dir):
    local = tmp_path / "local"
    _tree(local, {"a.txt": b"a", "b.txt": b"b"})
    sync_dir(runner, local, str(remote_dir))
    (remote_dir / "b.txt").unlink()
    report = sync_dir(runner, local, str(remote_dir))
    assert report.files_sent == 1 and (remote_dir / "b.txt").read_bytes() == b"b"


def test_gitignore_and_consoleignore_are_honoured(runner, tmp_path, remote_dir):
    local = tmp_path / "local"
    _tree(local, {
        ".gitignore": b"*.log\nbuild/\n/top-only.txt\n!keep.log\n",
        ".consoleignore": b"data/raw/**\nsecret?.env\n",
        "app.log": b"x", "keep.log": b"k", "build/out.o": b"o", "top-only.txt": b"t",
        "sub/top-only.txt": b"s", "data/raw/big.csv": b"r", "data/features/f.parquet": b"f",
        "secret1.env": b"s", "main.py": b"print()", "__pycache__/m.pyc": b"c", ".git/HEAD": b"h",
    })
    sync_dir(runner, local, str(remote_dir))
    assert sorted(_remote_files(remote_dir)) == [
        ".consoleignore", ".gitignore", "data/features/f.parquet", "keep.log", "main.py", "sub/top-only.txt"]


def test_ignore_rules_match_gitignore_semantics():
    rules = IgnoreRules(["*.tmp", "/logs/", "a/**/b", "!important.tmp", "doc/*.md"])
    assert rules.ignored("x/y.tmp", False) and not rules.ignored("important.tmp", False)
    assert rules.ignored("logs", True) and not rules.ignored("src/logs", True) and not rules.ignored("logs", False)
    assert rules.ignored("a/b", False) and rules.ignored("a/x/y/b", False)
    assert rules.ignored("doc/r.md", False) and not rules.ignored("doc/sub/r.md", False)


def test_odd_local_names_are_synced_without_reaching_a_shell(runner, tmp_path, remote_dir):
    local = tmp_path / "local"
    odd = {"with space.txt": b"1", "quote'and\"dq.txt": b"2", "$(touch PWNED).txt": b"3", "semi;colon|pipe.txt": b"4"}
    _tree(local, odd)
    sync_dir(runner, local, str(remote_dir))
    assert _remote_files(remote_dir) == odd
    assert not list(tmp_path.rglob("PWNED"))


def test_remote_dir_with_metacharacters_is_refused(runner, tmp_path):
    (tmp_path / "local").mkdir()
    for bad in ("/tmp/x; rm -rf ~", "/tmp/$(id)", "../../etc", "/tmp/a b"):
        with pytest.raises(RemotePathRefused):
            sync_dir(runner, tmp_path / "local", bad)


def test_local_name_with_newline_is_refused(runner, tmp_path, remote_dir):
    local = tmp_path / "local"
    _tree(local, {"bad\nname.txt": b"x"})
    with pytest.raises(RemotePathRefused, match="control characters"):
        sync_dir(runner, local, str(remote_dir))


def test_symlinks_are_not_followed(runner, tmp_path, remote_dir):
    local = tmp_path / "local"
    _tree(local, {"real.txt": b"r"})
    (local / "escape").symlink_to("/etc")
    report = sync_dir(runner, local, str(remote_dir))
    assert report.links_skipped == ["escape"] and _remote_files(remote_dir) == {"real.txt": b"r"}


@pytest.mark.slow
def test_readers_never_see_a_half_written_file(runner, tmp_path, remote_dir):
    """While a big file is replaced, every read of its final path is the old or the new
    content whole: it is written under a temporary name and renamed into place."""
    local = tmp_path / "local"
    old, new = b"o" * (6 << 20), b"n" * (9 << 20)
    _tree(local, {"model.bin": old})
    sync_dir(runner, local, str(remote_dir))
    (local / "model.bin").write_bytes(new)
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = (remote_dir / "model.bin").read_bytes()
            assert data in (old, new), f"partial file of {len(data)} bytes"
            seen.add(len(data))

    t = threading.Thread(target=reader)
    t.start()
    try:
        sync_dir(runner, local, str(remote_dir), use_openssh=False)
        time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert (remote_dir / "model.bin").read_bytes() == new and len(old) in seen


@pytest.mark.slow
def test_sync_dropped_mid_stream_leaves_no_partial_file_and_next_sync_completes(runner, tmp_path, remote_dir, sshd):
    local = tmp_path / "local"
    _tree(local, {"a.bin": b"v1", "b.bin": b"v1"})
    sync_dir(runner, local, str(remote_dir))
    _tree(local, {"a.bin": os.urandom(16 << 20), "b.bin": os.urandom(16 << 20)})

    def drop_after_first_file(message: str) -> None:
        # Called on the sending thread once a whole file is in the stream: the next
        # file cannot fit in the SSH window, so the drop lands mid-stream.
        if message.startswith("sent "):
            sshd.kill_sessions()

    with pytest.raises(RemoteError):
        sync_dir(runner, local, str(remote_dir), use_openssh=False, on_progress=drop_after_first_file)
    assert (remote_dir / "a.bin").read_bytes() == b"v1" and (remote_dir / "b.bin").read_bytes() == b"v1"
    runner.reconnect()
    report = sync_dir(runner, local, str(remote_dir))
    assert report.files_sent == 2
    assert _remote_files(remote_dir) == {"a.bin": (local / "a.bin").read_bytes(), "b.bin": (local / "b.bin").read_bytes()}
    assert sorted(p.name for p in remote_dir.iterdir()) == [MANIFEST_NAME, "a.bin", "b.bin"]
