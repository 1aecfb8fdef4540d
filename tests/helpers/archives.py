"""Tar shards written member by member, as webdataset shards are."""
import io
import tarfile


def write_tar(path, members):
    """Writes `members` ((name, bytes) pairs, in order) as an uncompressed tar; returns `path`."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
