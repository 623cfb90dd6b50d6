"""Model archives are extracted without tarfile's "data" filter where Python lacks it (3.11.0-3.11.3:
Debian 12's python3 is 3.11.2, the base scripts/build_image.sh makes): same rules, by hand."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from bot.model.archive import extract_plain


def _archive(path: Path, entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info in entries:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o4755  # setuid: not kept
    info.uid = info.gid = 4242  # another owner: not applied
    return info


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_extract_plain_writes_folders_and_files_inside_the_target(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    _archive(archive, [_file("metadata.json"), _dir("nlu"), _file("nlu/weights.bin")],
             {"metadata.json": b"{}", "nlu/weights.bin": b"\x00\x01"})
    target = tmp_path / "out"
    with tarfile.open(archive, "r:gz") as tar:
        extract_plain(tar, target)
    assert (target / "metadata.json").read_bytes() == b"{}"
    assert (target / "nlu" / "weights.bin").read_bytes() == b"\x00\x01"
    assert not (target / "metadata.json").stat().st_mode & 0o4000


@pytest.mark.parametrize("bad", ["../escape.txt", "/tmp/absolute.txt", "nlu/../../escape.txt", "link"])
def test_extract_plain_refuses_what_the_data_filter_refuses(tmp_path: Path, bad: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    if bad == "link":
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        _archive(archive, [info], {})
    else:
        _archive(archive, [_file(bad)], {bad: b"x"})
    target = tmp_path / "out"
    target.mkdir()
    with tarfile.open(archive, "r:gz") as tar, pytest.raises(tarfile.TarError):
        extract_plain(tar, target)
    assert not (tmp_path / "escape.txt").exists() and not (target / "link").exists()


def test_unpack_archive_only_extracts_the_named_parts_and_the_metadata(tmp_path: Path) -> None:
    """Fine-tuning reads config, domain and the model parts, not a (large) knowledge index."""
    from bot.model.archive import unpack_archive

    archive = tmp_path / "model.tar.gz"
    names = ["metadata.json", "config.yml", "nlu/weights.bin", "knowledge/index.faiss"]
    _archive(archive, [_dir("nlu"), _dir("knowledge"), *(_file(n) for n in names)], {n: b"x" for n in names})
    target = unpack_archive(archive, tmp_path / "some", only=("config.yml", "nlu"))
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert found == ["config.yml", "metadata.json", "nlu/weights.bin"]
    everything = unpack_archive(archive, tmp_path / "all")
    assert (everything / "knowledge" / "index.faiss").is_file()
