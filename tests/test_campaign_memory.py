"""Freezing a campaign's audience keeps memory flat as the list grows (tracemalloc)."""

from __future__ import annotations

from pathlib import Path

from bench.bench_campaign_memory import measure

MARGIN = 512 * 1024  # 180,000 more subscribers at even 3 bytes each would exceed this


def test_peak_memory_for_200k_is_within_a_small_margin_of_20k(tmp_path: Path) -> None:
    """The whole audience goes through INSERT ... SELECT batches: nothing per subscriber is
    held in Python, so ten times the list costs (almost) no more memory."""
    small = measure(f"sqlite:///{tmp_path / 'small.db'}", 20_000, tmp_path / "var")
    large = measure(f"sqlite:///{tmp_path / 'large.db'}", 200_000, tmp_path / "var")
    assert (small.rows, large.rows) == (12_000, 120_000)  # tag back, not vip: 6 in 10
    assert large.peak_bytes < small.peak_bytes + MARGIN, (small, large)
