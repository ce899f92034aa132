r"""Evaluates trained taggers on a sample of events and writes a report.

  python -m experiments.evaluate --workdir=runs/dnn \
    --workdir=runs/categories --data_dir=data/test --out_dir=runs/report \
    [--charge_symmetric]

Writes OUT/metrics.json (per tagger: auc, q, q_err, q_unbinned, accuracy,
n_events, bins), OUT/report.md and the plots as PNG. With
--charge_symmetric each deep tagger is also reported made odd under flipping
every track's charge, (f(x) - f(x flipped)) / 2 (see report.evaluate).
Evaluate on events the taggers never saw: a freshly generated sample, not
their training folder.
"""

from absl import app, flags, logging

from flavortag_jax import metrics, report, shards, taggers

_WORKDIR = flags.DEFINE_multi_string(
  'workdir', None, 'Trained tagger workdir; repeat for several taggers.'
)
_DATA_DIR = flags.DEFINE_string(
  'data_dir', None, 'Folder of event shards to evaluate on.'
)
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Folder for the report.')
_R_BINS = flags.DEFINE_list(
  'r_bins',
  [str(edge) for edge in metrics.BELLE_R_BINS],
  'r bin edges from 0 to 1 (Belle bins by default).',
)
_CHARGE_SYMMETRIC = flags.DEFINE_bool(
  'charge_symmetric',
  False,
  'Also report each deep tagger made odd under flipping every track charge '
  '(report.evaluate), named with the suffix " C-sym".',
)
_CALIBRATION_BINS = flags.DEFINE_integer(
  'calibration_bins', 10, 'Bins of predicted w in the calibration plot.'
)
flags.mark_flags_as_required(['workdir', 'data_dir', 'out_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  bins = metrics.check_r_bins([float(edge) for edge in _R_BINS.value])

  events = shards.read_data_dir(_DATA_DIR.value)
  logging.info(
    'Read %d events (mode %s) from %s',
    events.num_events,
    events.attrs.get('mode'),
    _DATA_DIR.value,
  )
  loaded = [taggers.load(workdir) for workdir in _WORKDIR.value]
  notes = [
    f'{t.name} was trained on `{_DATA_DIR.value}`: its figures include '
    'events it was trained on; evaluate on a freshly generated sample.'
    for t in loaded
    if taggers.trained_on(t, _DATA_DIR.value)
  ]
  for note in notes:
    logging.warning(note)
  evaluations = []
  for tagger, name in zip(loaded, report.unique_names(loaded), strict=True):
    logging.info(
      'Evaluating %s (%s) from %s', name, tagger.kind, tagger.workdir
    )
    evaluations.append(report.evaluate(tagger, events, name=name))
    if _CHARGE_SYMMETRIC.value and tagger.kind == 'dnn':
      evaluations.append(
        report.evaluate(
          tagger,
          events,
          name=f'{name}{report.CHARGE_SYMMETRIC_SUFFIX}',
          charge_symmetric=True,
        )
      )

  sample = (
    f'{events.num_events} events from `{_DATA_DIR.value}` (mode '
    f'{events.attrs.get("mode")}, seed {events.attrs.get("seed")}).'
  )
  summaries = report.write(
    _OUT_DIR.value,
    evaluations,
    bins=bins,
    calibration_bins=_CALIBRATION_BINS.value,
    sample=sample,
    notes=notes,
  )
  for name, s in summaries.items():
    logging.info(
      '%s: AUC %.4f, Q = %.2f +- %.2f %%',
      name,
      s['auc'],
      100 * s['q'],
      100 * s['q_err'],
    )
  logging.info('Report written to %s', _OUT_DIR.value)


if __name__ == '__main__':
  app.run(main)
