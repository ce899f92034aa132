"""The evaluation report of taggers on one sample: metrics, tables, plots.

`evaluate` runs one tagger on a sample; `write` turns a list of evaluations
into `metrics.json` (metrics.summary per tagger), `report.md` (summary and
per-bin tables, overtraining check, links to the plots) and PNG plots, every
file written under a temporary name and renamed when complete.
"""

from collections.abc import Sequence
import dataclasses
import math
import os
import pathlib
import re
from typing import Any

import numpy as np

from flavortag_jax import atomic, metrics, plots, shards, taggers, writers

METRICS_FILE = 'metrics.json'
REPORT_FILE = 'report.md'
# Appended to a tagger's name when it is evaluated charge-symmetrized.
CHARGE_SYMMETRIC_SUFFIX = ' C-sym'


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """One tagger's output on the evaluation sample.

  Attributes:
    name: Name in the report, unique among the evaluated taggers.
    kind: Tagger kind ('dnn' or 'category').
    qr: Output on the evaluation events, shape [events].
    q_true: True tag-side flavor, shape [events].
    history: Per-epoch training history, or None.
    outputs: Outputs on the tagger's own train and test splits (see
      taggers.read_outputs), or None.
    workdir: Where the tagger was loaded from, or None.
    charge_symmetric: The output was made odd under flipping every track's
      charge (see evaluate).
  """

  name: str
  kind: str
  qr: np.ndarray
  q_true: np.ndarray
  history: list[dict[str, Any]] | None = None
  outputs: dict[str, np.ndarray] | None = None
  workdir: str | None = None
  charge_symmetric: bool = False


def evaluate(
  tagger: taggers.Tagger,
  events: shards.Events,
  name: str | None = None,
  charge_symmetric: bool = False,
) -> Evaluation:
  """Runs `tagger` on `events` and collects what its workdir holds.

  Args:
    tagger: A loaded tagger.
    events: The evaluation sample, events the tagger was not trained on.
    name: Name in the report; the tagger's own name by default, with
      CHARGE_SYMMETRIC_SUFFIX appended when `charge_symmetric`.
    charge_symmetric: Evaluate the tagger made odd under flipping every
      track's charge, qr(x) = (f(x) - f(x with charges flipped)) / 2. The
      flavor-conjugate rest of event has the opposite true flavor, and a
      tagger trained on a finite sample does not learn that symmetry
      exactly: the deep tagger gives events with little flavor information
      an output shifted towards one flavor, seen as a large dw in the low r
      bins. The symmetrized output has no such shift. Its training history
      and train/test outputs are those of the plain tagger and are left out.

  Returns:
    The evaluation.
  """
  qr = tagger.predict(events)
  if charge_symmetric:
    qr = 0.5 * (qr - tagger.predict(events.charge_flipped()))
    name = name or f'{tagger.name}{CHARGE_SYMMETRIC_SUFFIX}'
  read = not charge_symmetric
  return Evaluation(
    name=name or tagger.name,
    kind=tagger.kind,
    qr=qr,
    q_true=np.asarray(events.events['q_tag']),
    history=taggers.read_history(tagger.workdir) if read else None,
    outputs=taggers.read_outputs(tagger.workdir) if read else None,
    workdir=str(tagger.workdir),
    charge_symmetric=charge_symmetric,
  )


def unique_names(loaded: Sequence[taggers.Tagger]) -> list[str]:
  """Returns report names: the tagger names, with the workdir where shared.

  Raises:
    ValueError: Two taggers share both name and workdir folder name.
  """
  names = [t.name for t in loaded]
  result = [
    f'{t.name} ({t.workdir.name})' if names.count(t.name) > 1 else t.name
    for t in loaded
  ]
  if len(set(result)) != len(result):
    raise ValueError(
      f'taggers cannot be told apart in the report: {result}; give each a '
      'distinct name in its tagger.json or pass each workdir once'
    )
  return result


def _percent(value: float | None, digits: int = 2) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return '-'
  return f'{100 * value:.{digits}f}'


def _summary_table(summaries: dict[str, dict], kinds: dict[str, str]) -> str:
  first = next(iter(summaries.values()))['q']
  lines = [
    '| tagger | kind | events | AUC | Q [%] | unbinned Q [%] | accuracy [%] '
    '| Q / Q(first) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for name, s in summaries.items():
    ratio = f'{s["q"] / first:.3f}' if first > 0 else '-'
    lines.append(
      f'| {name} | {kinds[name]} | {s["n_events"]} | {s["auc"]:.4f} '
      f'| {_percent(s["q"])} +- {_percent(s["q_err"])} '
      f'| {_percent(s["q_unbinned"])} | {_percent(s["accuracy"])} '
      f'| {ratio} |'
    )
  return '\n'.join(lines)


def _bin_table(summary: dict[str, Any]) -> str:
  lines = [
    '| r bin | eps [%] | w [%] | dw [%] | eps (1 - 2w)^2 [%] |',
    '| --- | ---: | ---: | ---: | ---: |',
  ]
  for b in summary['bins']:
    close = ']' if b['r_hi'] == 1.0 else ')'
    w = (
      '-' if b['w'] is None else f'{_percent(b["w"])} +- {_percent(b["w_err"])}'
    )
    lines.append(
      f'| [{b["r_lo"]:g}, {b["r_hi"]:g}{close} | {_percent(b["eff"])} '
      f'| {w} | {_percent(b["dw"])} | {_percent(b["q"])} |'
    )
  lines.append(
    f'| total | 100.00 | | | {_percent(summary["q"])} +- '
    f'{_percent(summary["q_err"])} |'
  )
  return '\n'.join(lines)


def _file_stems(names: Sequence[str]) -> list[str]:
  """Returns distinct file-name-safe stems for tagger names."""
  stems = []
  for name in names:
    stem = re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'tagger'
    base, k = stem, 1
    while stem in stems:
      k += 1
      stem = f'{base}_{k}'
    stems.append(stem)
  return stems


def _draw_figures(
  out_dir: pathlib.Path,
  evaluations: Sequence[Evaluation],
  summaries: dict[str, dict[str, Any]],
  calibration_bins: int,
) -> dict[str, pathlib.Path]:
  """Draws the comparison plots and each tagger's own; title -> PNG path."""
  figures = {
    'ROC curves': plots.roc_curves(
      {e.name: (e.qr, e.q_true) for e in evaluations}, out_dir / 'roc.png'
    ),
    'Q per r bin': plots.q_per_bin(summaries, out_dir / 'q_per_bin.png'),
    'Calibration': plots.calibration(
      {
        e.name: metrics.calibration_curve(e.qr, e.q_true, calibration_bins)
        for e in evaluations
      },
      out_dir / 'calibration.png',
    ),
  }
  stems = _file_stems([e.name for e in evaluations])
  for e, stem in zip(evaluations, stems, strict=True):
    if e.outputs is not None:
      title = f'Overtraining check: {e.name}'
      figures[title] = plots.overtraining(
        *(e.outputs[k] for k in taggers.OUTPUT_KEYS),
        out_dir / f'overtraining_{stem}.png',
        title=title,
      )
    if e.history:
      title = f'Training history: {e.name}'
      figures[title] = plots.loss_curves(
        e.history, out_dir / f'loss_{stem}.png', title=title
      )
  return figures


def _overtraining_table(evaluations: Sequence[Evaluation]) -> str:
  lines = [
    '| tagger | D (B0) | p (B0) | D (anti-B0) | p (anti-B0) |',
    '| --- | ---: | ---: | ---: | ---: |',
  ]
  for e in evaluations:
    if e.outputs is None:
      continue
    ks = metrics.overtraining_ks(*(e.outputs[k] for k in taggers.OUTPUT_KEYS))
    b0, anti_b0 = ks['B0'], ks['anti-B0']
    lines.append(
      f'| {e.name} | {b0.statistic:.4f} | {b0.pvalue:.3g} '
      f'| {anti_b0.statistic:.4f} | {anti_b0.pvalue:.3g} |'
    )
  return '\n'.join(lines)


def _markdown(
  evaluations: Sequence[Evaluation],
  summaries: dict[str, dict[str, Any]],
  figures: dict[str, pathlib.Path],
  sample: str,
  notes: Sequence[str],
) -> str:
  """Returns the text of report.md."""
  parts = ['# Flavor tagging evaluation', '']
  if sample:
    parts += [sample, '']
  parts += [f'**Warning:** {note}\n' for note in notes]
  kinds = {e.name: e.kind for e in evaluations}
  parts += [
    '## Summary',
    '',
    _summary_table(summaries, kinds),
    '',
    'Q = sum_i eps_i (1 - 2 w_i)^2 over r bins, with its statistical error '
    '(multinomial counts of right and wrong tags per bin). The unbinned Q, '
    'mean(qr^2), equals Q only for a calibrated output. qr = 0 counts as a '
    'B0 tag. Q / Q(first) compares each tagger with the first on the same '
    'events.',
    '',
  ]
  symmetric = [e.name for e in evaluations if e.charge_symmetric]
  if symmetric:
    parts += [
      f'{", ".join(symmetric)}: charge-symmetrized, qr = (f(x) - f(x with '
      "every track's charge flipped)) / 2, so that the output is odd under "
      'exchanging the positive and negative tracks, as the true flavor of '
      'the conjugate event is; f is the trained tagger.',
      '',
    ]
  for name, s in summaries.items():
    parts += [f'## Per r bin: {name}', '', _bin_table(s), '']
  if any(e.outputs is not None for e in evaluations):
    parts += [
      '## Overtraining check',
      '',
      'Kolmogorov-Smirnov distance D and p-value between the outputs on '
      "each tagger's own train and test splits, per true flavor.",
      '',
      _overtraining_table(evaluations),
      '',
    ]
  parts += ['## Plots', '']
  for title, path in figures.items():
    parts += [f'![{title}]({path.name})', '']
  workdirs = [f'- {e.name}: `{e.workdir}`' for e in evaluations if e.workdir]
  if workdirs:
    parts += ['## Tagger workdirs', '', *workdirs]
  return '\n'.join(parts) + '\n'


def write(
  out_dir: str | os.PathLike,
  evaluations: Sequence[Evaluation],
  *,
  bins: Sequence[float] = metrics.BELLE_R_BINS,
  calibration_bins: int = 10,
  sample: str = '',
  notes: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
  """Writes metrics.json, report.md and the plots of several taggers.

  Args:
    out_dir: Output folder, created if needed.
    evaluations: One per tagger, all on the same events.
    bins: r bin edges from 0.0 to 1.0.
    calibration_bins: Bins of predicted w in the calibration plot.
    sample: One line describing the evaluation events, for the report.
    notes: Warnings to show under it (e.g. events seen in training).

  Returns:
    What metrics.json holds: tagger name -> metrics.summary dict.
  """
  if not evaluations:
    raise ValueError('no taggers to report on; pass at least one')
  names = [e.name for e in evaluations]
  if len(set(names)) != len(names):
    raise ValueError(f'tagger names must be unique in a report, found {names}')
  sizes = {e.qr.size for e in evaluations}
  if len(sizes) != 1:
    raise ValueError(
      f'all taggers must be evaluated on the same events, found samples of '
      f'{sorted(sizes)} events'
    )
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)

  summaries = {
    e.name: metrics.summary(e.qr, e.q_true, bins) for e in evaluations
  }
  figures = _draw_figures(out_dir, evaluations, summaries, calibration_bins)
  text = _markdown(evaluations, summaries, figures, sample, notes)

  writers.write_json(out_dir / METRICS_FILE, summaries)
  atomic.write_text(out_dir / REPORT_FILE, text)
  return summaries
