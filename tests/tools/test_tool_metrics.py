"""One metrics model fills a tool's manifest and its result (tools.contract.ToolMetrics / ToolResult.of)."""

import pytest

from tools.contract import SelectionResult, ToolMetrics


class _Metrics(ToolMetrics):
    mode: str = ""
    shares: dict[str, float] = {}


class _Result(_Metrics, SelectionResult):
    pass


def test_result_of_metrics_carries_every_metric_and_the_manifest_the_same_values():
    m = _Metrics(mode="stratified", shares={"math": 0.25})
    res = _Result.of(m, summary="s", k=4)
    assert (res.mode, res.shares, res.k, res.summary) == ("stratified", {"math": 0.25}, 4, "s")
    assert m.manifest(seed=3) == {"mode": "stratified", "shares": {"math": 0.25}, "seed": 3}
    assert list(_Result.model_fields)[:3] == ["tool", "summary", "artifacts"]  # base fields stay first


def test_a_result_that_does_not_declare_the_metrics_is_refused():
    with pytest.raises(TypeError, match="does not subclass _Metrics"):
        SelectionResult.of(_Metrics())
    with pytest.raises(ValueError, match="extra"):
        _Metrics(nope=1)
