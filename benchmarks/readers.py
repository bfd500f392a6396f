"""Card present → tap committed in the outbox, per reader backend (issue #3).

Drives the real agent code (``Agent.handle_read``: number, sign, commit to the SQLite outbox with
``synchronous=FULL``) over each real driver stack, with the card simulated at the wire:

    pcsc    virtual card → vpcd → pcscd → pyscard
    nfc     PN532 firmware on a pty → nfcpy's pn532 driver
    serial  RDM6300 reader on a pty → pyserial

The upload path is left out (the uploader answers "offline" at once) so the numbers are the
kiosk's own latency. Each tap lands at a random moment, as real taps do relative to the reader's
polling. Run: ``.venv/bin/python benchmarks/readers.py [--taps 50] [--backend pcsc ...]``.
Needs pcscd running with the vpcd driver (``make pcscd``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from firmware_sim.cards import TUnionCard, VirtualCard
from firmware_sim.pn532 import Pn532Sim
from firmware_sim.serial_reader import SerialReaderSim
from firmware_sim.vpcd import VpcdSlot
from reader_agent.agent import Agent
from reader_agent.feedback import Feedback
from reader_agent.outbox import Outbox
from reader_agent.readers import open_reader
from reader_agent.signing import KioskKey
from schemas import TapMode, TapReceipt


@dataclass
class Hardware:
    spec: str
    present: Callable[[VirtualCard], None]
    remove: Callable[[], None]


class Offline:
    """An uploader that is never reachable: the member is answered as soon as the tap is on disk."""

    def wake(self) -> None:
        pass

    def wait_for_receipt(self, seq: int, timeout: float) -> TapReceipt | None:
        return None


@contextmanager
def pcsc_hardware() -> Iterator[Hardware]:
    with VpcdSlot(port=35963) as slot:
        yield Hardware("pcsc:Virtual PCD 00 00", slot.insert, slot.remove)


@contextmanager
def nfc_hardware() -> Iterator[Hardware]:
    with Pn532Sim() as sim:
        yield Hardware(sim.spec, sim.present, sim.remove)


@contextmanager
def serial_hardware() -> Iterator[Hardware]:
    with SerialReaderSim("rdm6300") as sim:
        # The reader cannot report removal; 300 ms of silence ends a presentation.
        yield Hardware(f"serial:{sim.port}?format=rdm6300&gap_ms=300", sim.present, sim.remove)


HARDWARE = {"pcsc": pcsc_hardware, "nfc": nfc_hardware, "serial": serial_hardware}


def measure(backend: str, taps: int, seed: int) -> list[float]:
    """Seconds from card placed to tap committed, for *taps* taps."""
    rng = random.Random(seed)
    committed: list[tuple[int, float]] = []
    got_one = threading.Condition()

    def on_feedback(feedback: Feedback) -> None:
        if feedback.seq is not None:
            with got_one:
                committed.append((feedback.seq, time.perf_counter()))
                got_one.notify_all()

    with HARDWARE[backend]() as hardware, tempfile.TemporaryDirectory() as state:
        key = KioskKey.generate()
        outbox = Outbox.open(Path(state) / "outbox.sqlite")
        agent = Agent(
            open_reader=lambda: open_reader(hardware.spec),
            outbox=outbox,
            uploader=Offline(),
            sealer=key,
            kiosk_id="bench",
            mode=TapMode.CHECKIN,
            emit=on_feedback,
            now=lambda: datetime.now(UTC),
            poll_timeout_s=0.2,
        )
        stop = threading.Event()
        runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
        runner.start()
        time.sleep(1.0)  # reader opened and idle
        latencies: list[float] = []
        try:
            for n in range(taps):
                time.sleep(rng.uniform(0.05, 0.45))  # a member arrives at a random moment
                card = TUnionCard(uid=bytes([0xB0, 0x00, n // 256, n % 256]), card_no=f"3104390{n:012d}")
                placed = time.perf_counter()
                hardware.present(card)
                with got_one:
                    if not got_one.wait_for(lambda n=n: len(committed) > n, timeout=10):  # type: ignore[misc]
                        raise RuntimeError(f"{backend}: tap {n + 1} was never committed")
                    latencies.append(committed[-1][1] - placed)
                hardware.remove()
        finally:
            stop.set()
            runner.join(10)
            outbox.close()
    return latencies


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--taps", type=int, default=50)
    parser.add_argument("--backend", action="append", choices=sorted(HARDWARE))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    backends = args.backend or ["pcsc", "nfc", "serial"]
    results = {b: measure(b, args.taps, args.seed) for b in backends}
    fastest = min(statistics.median(v) for v in results.values())
    print(f"card placed → tap committed in the outbox, {args.taps} taps per backend")
    print(f"{'backend':<8} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'median ÷ fastest':>17}")
    for backend, values in results.items():
        median = statistics.median(values)
        print(
            f"{backend:<8} {median * 1000:>10.1f} {p95(values) * 1000:>8.1f} {max(values) * 1000:>8.1f}"
            f" {median / fastest:>17.1f}"
        )


if __name__ == "__main__":
    main()
