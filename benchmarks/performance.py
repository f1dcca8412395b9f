"""The README's performance table, rendered from `benchmarks/results/pipeline_cost.json`,
`scaling.json` and `census.json` (`headwise bench --only pipeline,scaling,census`, or
`--render`), each figure next to its goal (issue 28)."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks import common

README_BEGIN = ("<!-- performance table: rendered from benchmarks/results/pipeline_cost.json, "
                "scaling.json and census.json by `headwise bench --render`; do not edit -->")
README_END = "<!-- end of performance table -->"
GOAL_FIRST_RUN = 0.5  # headwise's first run / the official example's, same Beam mode
GOAL_NOOP_S, GOAL_GATE_S = 5.0, 15.0
GOAL_MEMORY_50X = 1.5  # peak memory at 50x the data / at 1x


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def rows(pipeline: dict[str, Any] | None, scaling: dict[str, Any] | None,
         census: dict[str, Any] | None = None) -> list[list[str]]:
    out = []
    if pipeline:
        rounds = pipeline["rounds"]
        ours = statistics.median(r["wall_s"] for r in rounds["headwise_first"])
        theirs = statistics.median(r["wall_s"] for r in rounds["official_taxi_in_memory"])
        ratio = pipeline["ratios"]["headwise_vs_official_in_memory_wall"]
        out.append([
            "taxi first run (`make run`'s config), against the official TFX taxi example with "
            "the same Beam mode", f"{ours:.0f} s vs {theirs:.0f} s: **{ratio:.2f}x** (median "
            f"of {len(rounds['headwise_first'])} alternating rounds)",
            f"<= {GOAL_FIRST_RUN}x", _verdict(ratio <= GOAL_FIRST_RUN)])
        noop = pipeline["headwise_noop"]["wall_s"]
        out.append(["rerun with nothing changed", f"{noop:.1f} s", f"<= {GOAL_NOOP_S:.0f} s",
                    _verdict(noop <= GOAL_NOOP_S)])
        gate = pipeline["headwise_gate_change"]
        out.append([f"rerun after changing only a gate (`{gate['changed']}`)",
                    f"{gate['wall_s']:.1f} s", f"<= {GOAL_GATE_S:.0f} s",
                    _verdict(gate["wall_s"] <= GOAL_GATE_S)])
    if scaling:
        factors = scaling["factors"]
        base, top = factors[min(factors, key=int)], factors[max(factors, key=int)]
        k = max(factors, key=int)
        mem = top["peak_rss_mib"] / base["peak_rss_mib"]
        out.append([f"peak memory, {top['rows']:,} rows ({k}x taxi) / {base['rows']:,}",
                    f"{top['peak_rss_mib']:,.0f} / {base['peak_rss_mib']:,.0f} MiB: "
                    f"**{mem:.2f}x**", f"<= {GOAL_MEMORY_50X}x", _verdict(mem <= GOAL_MEMORY_50X)])
        growth = []
        for step in ("example_gen", "transform", "trainer"):
            t = top[step]["seconds"] / base[step]["seconds"]
            growth.append(f"{step.replace('_', '')} {t:.1f}x")
        scale = top["rows"] / base["rows"]
        out.append([f"time at {k}x the rows / at 1x (Trainer: one epoch)", ", ".join(growth),
                    f"<= {scale:.0f}x (linear)", _verdict(all(
                        top[s]["seconds"] / base[s]["seconds"] <= scale
                        for s in ("example_gen", "transform", "trainer")))])
    if census:
        from benchmarks import census as census_bench

        out += census_bench.rows(census)
    return out


def readme_table(pipeline: dict[str, Any] | None, scaling: dict[str, Any] | None,
                 census: dict[str, Any] | None = None) -> str:
    return common.md_table(["measure (2 cores)", "measured", "goal", ""],
                           rows(pipeline, scaling, census))


def readme_block(readme: str) -> str | None:
    return common.readme_block(readme, README_BEGIN, README_END)


def render_readme(readme_path: str, pipeline: dict[str, Any] | None,
                  scaling: dict[str, Any] | None, census: dict[str, Any] | None = None) -> bool:
    """Rewrite the README's performance table; whether the README changed."""
    if not (pipeline or scaling or census):
        return False
    return common.render_readme_block(readme_path, README_BEGIN, README_END,
                                      readme_table(pipeline, scaling, census))
