"""Capture details that need no claude: the stdout file's disk space, the live text."""

from __future__ import annotations

import os
from pathlib import Path

from orch_plugins.supervisor import release_space


def test_read_part_of_the_stdout_file_gives_its_disk_space_back(tmp_path: Path) -> None:
    path = tmp_path / "stdout.jsonl"
    data = b'{"type":"stream_event"}\n' * 400_000  # ~9.6 MB of deltas
    path.write_bytes(data)
    fd = os.open(path, os.O_RDWR)
    try:
        before = os.fstat(fd).st_blocks * 512
        released = release_space(fd, 8 << 20, 0)
        after = os.fstat(fd).st_blocks * 512
    finally:
        os.close(fd)
    assert released == 8 << 20
    assert before - after >= 8 << 20  # the blocks are free...
    assert path.stat().st_size == len(data)  # ...while offsets and size stay
    with open(path, "rb") as fh:
        fh.seek(8 << 20)
        assert fh.read() == data[8 << 20 :]  # what was not read yet is intact
