"""Statistics over verdicts: intervals, baselines and regressions, judge agreement, preflight."""
