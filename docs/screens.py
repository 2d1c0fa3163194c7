"""Screens-as-text for README.md, made by running the real `modelimport` on a terminal.

    pip install pyte && python docs/screens.py

Runs the real CLI on a pseudo-terminal (100 x 30) in a temporary folder, feeds what it
prints into a terminal emulator (pyte) and prints the screen at three moments: the review
(waiting for an answer), the progress (while a large file is copied) and the summary (when
the import has ended). Paste the output into docs/importing.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import pyte

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _common import write_safetensors  # noqa: E402

COLS, ROWS = 100, 30
MiB = 1024**2


def lora(path: Path, seed: int) -> None:
    write_safetensors(path, 64 * 1024, seed=seed.to_bytes(8, "big"))


class Screen:
    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELIMPORT_")}
        env.update(HF_HUB_OFFLINE="1", COLUMNS=str(COLS), LINES=str(ROWS), TERM="xterm",
                   NO_COLOR="1")
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.Stream(self.screen)
        self.child = pexpect.spawn(sys.executable, ["-m", "modelimport", *args], cwd=str(cwd),
                                   env=env, dimensions=(ROWS, COLS), encoding="utf-8",
                                   timeout=120)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return

    def wait_for(self, text: str, limit: float = 60) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end and text not in self.text():
            self.pump(0.1)

    def text(self) -> str:
        lines = [line.rstrip() for line in self.screen.display]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="modelimport-screens-"))
    dl = work / "Downloads"
    dl.mkdir()
    lora(dl / "add-detail-xl-v2.0-by-someone-with-a-very-long-name-final.safetensors", 1)
    lora(dl / "pixel-art-style.safetensors", 2)
    lora(dl / "model.safetensors", 3)
    (dl / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    for n in range(3):
        write_safetensors(dl / f"big-checkpoint-{n}.safetensors", 768 * MiB,
                          seed=n.to_bytes(8, "big"))

    review = Screen(["--library", "lib", "import", "Downloads"], work)
    review.wait_for("model(s)?")
    print("--- review ---")
    print(review.text())
    review.child.sendline("")
    review.pump(1.5)
    print("--- progress ---")
    print(review.text())
    review.child.expect(pexpect.EOF, timeout=300)
    review.stream.feed(review.child.before or "")
    print("--- summary ---")
    print(review.text())


if __name__ == "__main__":
    main()
