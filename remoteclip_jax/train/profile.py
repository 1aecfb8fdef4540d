"""A `jax.profiler` trace of a window of training steps (``config.train.profile_steps``).

``profile_steps`` is "" (off), "START,N" (or a pair) for steps START..START+N-1, or "auto" (what
``remoteclip-jax train --profile`` sets): N = 5 steps from the second step this run executes, so
the first step's warm-up stays out. The trace lands in ``WORKDIR/profile`` in the layout
TensorBoard's profile plugin (and xprof/Perfetto) read: ``plugins/profile/<time>/<host>.xplane.pb``.
Each step is wrapped in a `StepTraceAnnotation`, so the viewer splits the trace by step.
"""
from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile

import jax
from absl import logging

from remoteclip_jax import files
from remoteclip_jax.errors import ConfigError
from remoteclip_jax.train.setup import say

AUTO_STEPS = 5


def parse_steps(value, first_step: int = 1) -> tuple[int, int] | None:
    """``train.profile_steps`` as (first, last) step, inclusive; None when off.

    Args:
        value: "", "auto", "START,N" or a (START, N) pair.
        first_step: the first step this run executes ("auto" starts one later).

    Raises:
        ConfigError: a value that is none of these, or START < 1 or N < 1.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip() == "auto":
        return first_step + 1, first_step + AUTO_STEPS
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        start, count = (int(str(p).strip()) for p in parts)
    except ValueError:
        start = count = None
    if start is None or start < 1 or count < 1:
        raise ConfigError(f"config.train.profile_steps={value!r}: want 'START,N' (e.g. '10,5': "
                          "steps 10..14, each >= 1), 'auto' or '' (off)")
    return start, start + count - 1


class StepProfiler:
    """Starts the trace before the window's first step and stops it after its last finished.

    Call `before(step)` ahead of dispatching a step, run the step inside `annotate(step)`, then
    `after(step, outputs)`; `close()` ends a trace the loop left early (data ran out, an error).
    """

    def __init__(self, value, workdir, first_step: int, last_step: int):
        window = parse_steps(value, first_step)
        self.directory = files.as_path(workdir) / "profile"
        # The profiler writes local files; for a bucket they are traced locally and uploaded.
        self._local = self.directory
        self.first = self.last = None
        self.active = False
        self.trace_dir: pathlib.Path | None = None
        if window is None:
            return
        first, last = max(window[0], first_step), min(window[1], last_step)
        if first > last:
            logging.warning("config.train.profile_steps=%r: steps %d..%d are not run by this run "
                            "(steps %d..%d); no profile", value, window[0], window[1],
                            first_step, last_step)
            return
        self.first, self.last = first, last

    def before(self, step: int):
        if step == self.first:
            if files.is_remote(self.directory):
                self._local = pathlib.Path(tempfile.mkdtemp(prefix="remoteclip-profile-"))
            self._local.mkdir(parents=True, exist_ok=True)
            self._known = set(self._runs())
            jax.profiler.start_trace(str(self._local))
            self.active = True

    def annotate(self, step: int):
        if self.active:
            return jax.profiler.StepTraceAnnotation("train", step_num=step)
        return contextlib.nullcontext()

    def after(self, step: int, outputs):
        if self.active and step == self.last:
            jax.block_until_ready(outputs)  # the trace must hold the window's device work
            self._stop()

    def close(self):
        if self.active:
            self._stop()

    def _runs(self):
        return (self._local / "plugins" / "profile").glob("*")

    def _stop(self):
        jax.profiler.stop_trace()
        self.active = False
        new = sorted(set(self._runs()) - self._known)
        self.trace_dir = new[-1] if new else self._local
        if self._local != self.directory:
            files.upload_tree(self._local, self.directory)
            self.trace_dir = self.directory / self.trace_dir.relative_to(self._local).as_posix()
            shutil.rmtree(self._local, ignore_errors=True)
        say(f"profile of steps {self.first}..{self.last}: {self.trace_dir} "
            f"(view: tensorboard --logdir {self.directory}, or xprof)")
