"""The pure failure policy (coalition/failures.py): reasons, log rules and their presets on
real-looking renderer logs, blocks and sick hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from coalition import failures
from coalition.failures import FailurePolicy, RuleError, parse_rules

SAMPLES = Path(__file__).parent / "logsamples"


def test_reasons() -> None:
    assert failures.exit_reason(2) == "exit code 2"
    assert failures.exit_reason(-9) == "killed by signal 9 (SIGKILL)"
    assert failures.exit_reason(-200) == "killed by signal 200 (unknown signal)"
    assert failures.stall_reason(30) == "stalled (no output for 30 s)"
    assert failures.timeout_reason(60) == "timeout (60 s)"
    assert failures.too_fast_reason(0.25, 5) == "too fast (0.2 s < minruntime 5 s)"
    assert failures.clip("a\nb  c") == "a b c"
    assert len(failures.clip("x" * 1000)) == failures.REASON_LEN


def test_stall_and_minruntime_decisions() -> None:
    assert failures.stalled(100.0, 30, 130.0) and not failures.stalled(100.0, 30, 129.9)
    assert not failures.stalled(0.0, 0, 1e9)  # 0: no stall detection
    assert failures.too_fast(0, 1.0, 5) and not failures.too_fast(0, 6.0, 5)
    assert not failures.too_fast(1, 1.0, 5)  # a failure already: not "too fast"
    assert not failures.too_fast(0, 0.0, 0)
    assert failures.effective(0, 30) == 30 and failures.effective(10, 30) == 10
    assert failures.effective(-1, 30) == 0


def test_rule_syntax() -> None:
    rules = parse_rules(
        "# comment\n\nlic requeue (?i)licen[cs]e not available\n"
        "done succeed ^Render complete$\nquota limit:nuke:600 out of seats\nhost sick GPU lost\n"
    )
    assert [(r.name, r.action, r.limit, r.seconds) for r in rules] == [
        ("lic", "requeue", "", 0),
        ("done", "succeed", "", 0),
        ("quota", "limit", "nuke", 600),
        ("host", "sick", "", 0),
    ]
    assert rules[2].action_text == "limit:nuke:600"
    assert failures.rule_reason(rules[0]) == "log rule lic: requeue"
    assert failures.rule_by_name(rules, "done") is rules[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lonely", "line 1: expected NAME ACTION REGEX"),
        ("a explode x", "unknown action 'explode'"),
        ("a fail (unclosed", "bad regex"),
        ("b@d fail x", "a rule name is"),
        ("\n@nosuch", "line 2: unknown preset '@nosuch'"),
        ("a limit: x", "unknown action 'limit:'"),
    ],
)
def test_bad_rules_say_which_line(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace("@", "@")):
        parse_rules(text)


def test_matching_is_ordered_by_line_then_rule() -> None:
    rules = parse_rules("a fail boom\nb requeue licence\n")
    assert failures.match_rules(rules, "ok\nlicence gone\nboom\n").name == "b"  # first line wins
    assert failures.match_rules(rules, "boom and licence\n").name == "a"  # then the first rule
    assert failures.match_rules(rules, "all fine\n") is None
    assert failures.match_rules((), "boom") is None


@pytest.mark.parametrize(
    ("preset", "sample", "rule", "action"),
    [
        ("arnold", "arnold.log", "arnold-licence", "requeue"),
        ("arnold", "arnold_fatal.log", "arnold-fatal", "fail"),
        ("vray", "vray.log", "vray-licence", "requeue"),
        ("vray", "vray_fatal.log", "vray-fatal", "fail"),
        ("nuke", "nuke.log", "nuke-nolicence", "requeue"),
        ("nuke", "nuke_fatal.log", "nuke-fatal", "fail"),
        ("blender", "blender.log", "blender-oom", "requeue"),
        ("blender", "blender_fatal.log", "blender-fatal", "fail"),
        ("redshift", "redshift.log", "redshift-licence", "requeue"),
        ("disk", "disk.log", "disk-full", "requeue"),
    ],
)
def test_presets_on_log_samples(preset: str, sample: str, rule: str, action: str) -> None:
    rules = parse_rules(f"@{preset}")
    hit = failures.match_rules(rules, (SAMPLES / sample).read_text())
    assert hit is not None and (hit.name, hit.action) == (rule, action)


def test_presets_leave_a_clean_log_alone() -> None:
    every = parse_rules("\n".join(f"@{name}" for name in failures.PRESETS))
    assert failures.match_rules(every, (SAMPLES / "clean.log").read_text()) is None
    for sample in SAMPLES.glob("*.log"):  # and each sample is caught by some preset
        if sample.name != "clean.log":
            assert failures.match_rules(every, sample.read_text()) is not None, sample.name


def test_blocks_and_sickness() -> None:
    assert failures.blocked_until(2, 3, 100.0, 60.0) == 0.0
    assert failures.blocked_until(3, 3, 100.0, 60.0) == 160.0
    assert failures.blocked_until(3, 3, 100.0, 0.0) == float("inf")  # never forgiven
    assert failures.blocked_until(99, 0, 100.0, 60.0) == 0.0  # 0: never blocks
    policy = FailurePolicy(sickjobs=3)
    assert failures.is_sick(3, policy) and not failures.is_sick(2, policy)
    assert not failures.is_sick(1, FailurePolicy(sickjobs=1))  # one job is never "several"
    assert not failures.is_sick(9, FailurePolicy(sickjobs=0))
    assert failures.block_scope(FailurePolicy(), 7, 3) == 7
    assert failures.block_scope(FailurePolicy(blockscope="group"), 7, 3) == 3
    assert failures.block_scope(FailurePolicy(blockscope="group"), 7, 0) == 7
    lo, hi = failures.key_range("00ab")
    assert lo <= "00ab0001" < hi and not lo <= "00ac" < hi
