"""Segmentation time grows linearly with the text: 4x the input must not cost anywhere near 16x."""

from __future__ import annotations

import time

from pipeline.segment import segment_text

SENTENCE = ("The minister said on Tuesday that the talks would continue, and that both sides had agreed "
            "to meet again next week in Geneva.")


def _single_article(paragraphs: int) -> str:
    """One long article of distinct body paragraphs, every one also broken across two lines."""
    return "\n\n".join(f"{SENTENCE} It was point {i} of the record,\nand the delegates wrote it down in full."
                       for i in range(paragraphs))


def _best_seconds(text: str, repeats: int = 3) -> float:
    """Best CPU time of this process (other jobs on a shared machine do not count)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        segment_text(text)
        best = min(best, time.process_time() - start)
    return best


def test_segmentation_is_not_quadratic():
    small, large = _single_article(1500), _single_article(6000)
    assert len(segment_text(large)[0].paragraphs) == 6000
    ratio = _best_seconds(large) / _best_seconds(small)
    assert ratio < 8, f"4x the text took {ratio:.1f}x the time (linear ~4, quadratic ~16)"


def test_one_sentence_broken_over_many_lines_is_not_quadratic():
    def text(lines: int) -> str:
        return "Start of a long sentence,\n" + "\n".join(f"and word{i} goes on across the line," for i in range(lines))

    ratio = _best_seconds(text(16000)) / _best_seconds(text(4000))
    assert ratio < 8, f"4x the lines took {ratio:.1f}x the time (linear ~4, quadratic ~16)"
