"""A Google Cloud Storage stand-in on localhost for tests of ``gs://`` workdirs.

`gcp-storage-emulator` serves the GCS JSON API from memory; gcsfs (behind `etils.epath`) finds it
through ``STORAGE_EMULATOR_HOST``, tensorstore (behind orbax's array writes) through
``TENSORSTORE_GCS_HTTP_URL``, with a fixed test token instead of credentials, and array_record's
GCS reader (google-cloud-cpp) through ``CLOUD_STORAGE_EMULATOR_ENDPOINT``. Both packages are
test-only and optional: `start` skips the calling test when either is missing.
"""
import contextlib
import os
import socket

import pytest

BUCKET = "fake-bucket"


def _add_generation_header(objects):
    """Media downloads of the emulator omit the ``x-goog-generation`` header that real GCS sends
    and tensorstore's OCDBT reads to know which version of an object it holds."""
    original = objects.download

    def download(request, response, storage, *args, **kwargs):
        original(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"],
                                       request.params["object_id"])
        except Exception:  # noqa: BLE001 - not found: the original answered 404 already
            return
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
    return original, download


@contextlib.contextmanager
def start():
    """Serves an empty bucket `BUCKET`; yields the environment variables that point gcsfs and
    tensorstore at it (also set in this process while the block runs)."""
    pytest.importorskip("gcsfs", reason="install gcsfs to test gs:// paths")
    pytest.importorskip("gcp_storage_emulator",
                        reason="install gcp-storage-emulator to test gs:// paths")
    from gcp_storage_emulator import server as server_lib
    from gcp_storage_emulator.handlers import objects

    if not getattr(objects.download, "adds_generation", False):  # once per process
        original, patched = _add_generation_header(objects)
        patched.adds_generation = True
        objects.download = patched  # `objects.get` (?alt=media) looks it up by name
        server_lib.HANDLERS = tuple(
            (regex, {m: patched if f is original else f for m, f in methods.items()})
            for regex, methods in server_lib.HANDLERS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_lib.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
           "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
           "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
