"""The category-based flavor tagger: per-category BDTs and a combiner BDT.

Training, in the experiment's two levels:
  1. Per category (categories.CATEGORIES) a gradient-boosted tree classifier
     (LightGBM) scores every candidate track for being the category's target.
     The SlowPion classifier is trained first: its scores choose the
     slow-pion partner of the pair categories (FastSlowCorrelated,
     KaonPion).
  2. Each category's output q * p per event (categories.category_qp) feeds a
     combiner classifier whose output P(B0) gives qr.

The training split is divided at random: a share `combiner_fraction` of its
events (at most `max_combiner_events`) trains only the combiner and the rest
only the category classifiers,
so the combiner learns from category outputs on events those classifiers did
not see, as they will be on new events.

The combiner output is made flavor-antisymmetric, qr(x) = P(x) - P(-x) for
category outputs x, and it is trained on each event and its flavor conjugate
(-x, opposite label): the tag-side decays are CP-symmetric apart from
negligible CP violation, and the detector treats both charges alike. An event
without tracks has x = 0 and so qr = 0.
"""

from collections.abc import Callable
import dataclasses
import json
import os
import pathlib
from typing import Any

from absl import logging
import lightgbm as lgb
import numpy as np

from flavortag_jax import atomic, categories, metrics, shards

TAGGER_FILE = 'tagger.json'
METRICS_FILE = 'metrics.json'
OUTPUTS_FILE = 'outputs.npz'
COMBINER_FILE = 'combiner.txt'
TAGGER_KIND = 'category'
TAGGER_NAME = 'category-based'
TAGGER_SCHEMA_VERSION = 1
# The train outputs in outputs.npz are subsampled to at most this many.
MAX_TRAIN_OUTPUTS = 100_000


def model_file(category_name: str) -> str:
  """Returns the file name of a category's model in the workdir."""
  return f'category_{category_name}.txt'


@dataclasses.dataclass(frozen=True)
class CategoryTaggerConfig:
  """Settings of the category-based tagger.

  Tree settings as in the Belle II flavor tagger (FastBDT: 500 trees of
  depth 3, shrinkage 0.1, sampling fraction 0.5).

  Attributes:
    num_trees: Boosting rounds per category classifier.
    combiner_num_trees: Boosting rounds of the combiner.
    max_depth: Depth of each tree (at most 2**max_depth leaves).
    learning_rate: Shrinkage.
    bagging_fraction: Fraction of candidates drawn for each tree.
    min_data_in_leaf: Minimum number of candidates in a leaf.
    lambda_l2: L2 penalty on leaf values. NOTE: without it LightGBM's Newton
      step diverges when a category's targets are separated almost perfectly
      (Lambda protons by protonID: vanishing hessians give leaf values of
      order 1e4 and candidate AUC below 0.5); the experiment's FastBDT
      bounds its leaf values by construction.
    combiner_fraction: Share of the training events kept for the combiner.
    max_combiner_events: At most this many events for the combiner (13
      inputs need far fewer events than the category classifiers, and every
      combiner event costs 13 classifier evaluations per track); the rest
      go to the category classifiers.
    num_threads: LightGBM threads (results are deterministic for a fixed
      number of threads).
    seed: Seed of the combiner share draw and of LightGBM's sampling.
  """

  num_trees: int = 500
  combiner_num_trees: int = 500
  max_depth: int = 3
  learning_rate: float = 0.1
  bagging_fraction: float = 0.5
  min_data_in_leaf: int = 20
  lambda_l2: float = 1.0
  combiner_fraction: float = 0.5
  max_combiner_events: int = 250_000
  num_threads: int = 2
  seed: int = 0

  def __post_init__(self):
    if self.num_trees < 1 or self.combiner_num_trees < 1:
      raise ValueError(
        f'num_trees={self.num_trees}, combiner_num_trees='
        f'{self.combiner_num_trees}: each must be at least 1'
      )
    if self.max_depth < 1:
      raise ValueError(f'max_depth={self.max_depth}, expected at least 1')
    if not 0 < self.bagging_fraction <= 1 or self.learning_rate <= 0:
      raise ValueError(
        f'bagging_fraction={self.bagging_fraction} must be in (0, 1] and '
        f'learning_rate={self.learning_rate} positive'
      )
    if self.max_combiner_events < 1:
      raise ValueError(
        f'max_combiner_events={self.max_combiner_events}, expected >= 1'
      )
    if not 0 < self.combiner_fraction < 1:
      raise ValueError(
        f'combiner_fraction={self.combiner_fraction}, expected a share in '
        '(0, 1) of the training events'
      )


def lightgbm_params(config: CategoryTaggerConfig, seed: int) -> dict:
  """Returns LightGBM parameters for one binary classifier."""
  return {
    'objective': 'binary',
    'max_depth': config.max_depth,
    'num_leaves': 2**config.max_depth,
    'learning_rate': config.learning_rate,
    'bagging_fraction': config.bagging_fraction,
    'bagging_freq': 1,
    'min_data_in_leaf': config.min_data_in_leaf,
    'lambda_l2': config.lambda_l2,
    'num_threads': config.num_threads,
    'deterministic': True,
    'force_row_wise': True,
    'seed': seed,
    'verbose': -1,
  }


def _train_classifier(inputs, target, feature_names, num_trees, params, what):
  """Trains one LightGBM binary classifier; checks both classes exist."""
  num_target = int(np.sum(target))
  if num_target == 0 or num_target == len(target):
    raise ValueError(
      f'{what}: {num_target} of {len(target)} training candidates are '
      'targets; need both targets and non-targets. Train on more events.'
    )
  dataset = lgb.Dataset(
    inputs,
    label=target.astype(np.float32),
    feature_name=list(feature_names),
    free_raw_data=True,
  )
  return lgb.train(params, dataset, num_boost_round=num_trees)


@dataclasses.dataclass
class CategoryOutputs:
  """Per-category results on a set of events.

  Attributes:
    qp: Category outputs q * p, shape [events, 13] (order of
      categories.CATEGORY_NAMES).
    scores: Category name -> target probability of each candidate, shape
      [candidates of that category].
    candidates: Category name -> candidate mask over tracks, [num_tracks].
    partner: Slow-pion partner of each track, shape [num_tracks].
  """

  qp: np.ndarray
  scores: dict[str, np.ndarray]
  candidates: dict[str, np.ndarray]
  partner: np.ndarray


@dataclasses.dataclass
class CategoryTagger:
  """A trained category-based tagger.

  Attributes:
    models: Category name -> LightGBM booster, for all 13 categories.
    combiner: LightGBM booster on the 13 category outputs.
  """

  models: dict[str, lgb.Booster]
  combiner: lgb.Booster

  def category_outputs(self, events: shards.Events) -> CategoryOutputs:
    """Returns every category's candidate scores and event outputs."""
    return _category_outputs(self.models, events)

  def qr_from_outputs(self, qp: np.ndarray) -> np.ndarray:
    """Returns qr = P(x) - P(-x) of the combiner, shape [events]."""
    if len(qp) == 0:
      return np.zeros(0)
    return self.combiner.predict(qp) - self.combiner.predict(-qp)

  def __call__(self, events: shards.Events) -> np.ndarray:
    """Returns qr per event, shape [events]; 0 for events without tracks."""
    qr = self.qr_from_outputs(self.category_outputs(events).qp)
    qr[events.events['n_tracks'] == 0] = 0.0
    return qr


def _category_outputs(models, events) -> CategoryOutputs:
  """Scores every category's candidates with `models`; see CategoryOutputs."""
  variables = categories.track_variables(events)
  event_index = events.event_index()
  charge = variables['charge']
  slow = categories.CATEGORY_BY_NAME['SlowPion']
  slow_score = _predict(models['SlowPion'], slow, variables)
  partner = categories.slow_pion_partner(
    charge, slow_score, event_index, events.num_events
  )
  variables = categories.add_partner_variables(variables, partner)

  qp = np.zeros((events.num_events, len(categories.CATEGORIES)))
  scores, candidates = {}, {}
  for k, category in enumerate(categories.CATEGORIES):
    mask = categories.candidate_mask(category, variables, partner)
    if category.name == 'SlowPion':
      score = slow_score[mask]
    else:
      score = _predict(models[category.name], category, variables, mask)
    qp[:, k] = categories.category_qp(
      category, score, charge[mask], event_index[mask], events.num_events
    )
    scores[category.name] = score
    candidates[category.name] = mask
  return CategoryOutputs(qp, scores, candidates, partner)


def _predict(model, category, variables, mask=None) -> np.ndarray:
  """Target probability of the (masked) tracks as `category` candidates."""
  inputs = categories.candidate_inputs(category, variables)
  if mask is not None:
    inputs = inputs[mask]
  if len(inputs) == 0:
    return np.zeros(0)
  return model.predict(inputs)


def fit(
  events: shards.Events, config: CategoryTaggerConfig = CategoryTaggerConfig()
) -> CategoryTagger:
  """Trains the category-based tagger on `events` (the training split).

  Args:
    events: Training events with truth (mc_*) columns.
    config: Settings.

  Returns:
    The trained tagger.

  Raises:
    ValueError: Too few events, missing truth or bad track values.
  """
  categories.check_tracks(events)
  categories.check_tracks(events, categories.TRUTH_TRACK_COLUMNS)
  if events.num_events < 2:
    raise ValueError(
      f'{events.num_events} training events: the category tagger needs '
      'events for its category classifiers and for its combiner'
    )
  permutation = np.random.default_rng(config.seed).permutation(
    events.num_events
  )
  num_combiner = min(
    max(1, round(config.combiner_fraction * events.num_events)),
    config.max_combiner_events,
  )
  combiner_events = events.take(np.sort(permutation[:num_combiner]))
  category_events = events.take(np.sort(permutation[num_combiner:]))
  logging.info(
    'Training %d category classifiers on %d events (%d tracks); the '
    'combiner on %d events.',
    len(categories.CATEGORIES),
    category_events.num_events,
    category_events.num_tracks,
    combiner_events.num_events,
  )
  models = _fit_categories(category_events, config)

  outputs = _category_outputs(models, combiner_events)
  label = (combiner_events.events['q_tag'] == 1).astype(np.float32)
  inputs = np.concatenate([outputs.qp, -outputs.qp]).astype(np.float32)
  labels = np.concatenate([label, 1 - label])
  combiner = _train_classifier(
    inputs,
    labels,
    categories.CATEGORY_NAMES,
    config.combiner_num_trees,
    lightgbm_params(config, config.seed + len(categories.CATEGORIES)),
    'combiner',
  )
  return CategoryTagger(models, combiner)


def _fit_categories(events, config) -> dict[str, lgb.Booster]:
  """Trains the 13 category classifiers, SlowPion first."""
  variables = categories.track_variables(events)
  event_index = events.event_index()
  no_partner = np.full(events.num_tracks, -1)
  slow_target = categories.truth_targets(events.tracks, no_partner)['SlowPion']

  def train(k, category, variables, target, mask):
    model = _train_classifier(
      categories.candidate_inputs(category, variables)[mask],
      target[mask],
      category.inputs,
      config.num_trees,
      lightgbm_params(config, config.seed + k),
      f'category {category.name}',
    )
    logging.info(
      'Category %s: %d candidates, %d targets.',
      category.name,
      int(mask.sum()),
      int(target[mask].sum()),
    )
    return model

  index = {name: k for k, name in enumerate(categories.CATEGORY_NAMES)}
  slow = categories.CATEGORY_BY_NAME['SlowPion']
  models = {
    'SlowPion': train(
      index['SlowPion'],
      slow,
      variables,
      slow_target,
      np.ones(events.num_tracks, bool),
    )
  }
  slow_score = _predict(models['SlowPion'], slow, variables)
  partner = categories.slow_pion_partner(
    variables['charge'], slow_score, event_index, events.num_events
  )
  variables = categories.add_partner_variables(variables, partner)
  targets = categories.truth_targets(events.tracks, partner)
  for category in categories.CATEGORIES:
    if category.name in models:
      continue
    mask = categories.candidate_mask(category, variables, partner)
    models[category.name] = train(
      index[category.name], category, variables, targets[category.name], mask
    )
  return models


def evaluate_categories(
  tagger: CategoryTagger, events: shards.Events
) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
  """Returns qr and each category's figures of merit on `events`.

  A category alone is scored by Q of its output q * p read as qr
  (metrics.binned_q in the Belle r bins; the measured wrong-tag fraction per
  bin calibrates it) and by the AUC of its candidate classifier for its
  truth target.

  Args:
    tagger: A trained tagger.
    events: Events with truth columns.

  Returns:
    qr of the combined tagger, shape [events], and a dict category name ->
    {'q', 'q_err', 'candidate_auc', 'num_candidates', 'num_targets'}.
  """
  outputs = tagger.category_outputs(events)
  qr = tagger.qr_from_outputs(outputs.qp)
  qr[events.events['n_tracks'] == 0] = 0.0
  q_tag = events.events['q_tag']
  targets = categories.truth_targets(events.tracks, outputs.partner)
  table = {}
  for k, name in enumerate(categories.CATEGORY_NAMES):
    target = targets[name][outputs.candidates[name]]
    q_result = metrics.binned_q(outputs.qp[:, k], q_tag)
    both = 0 < target.sum() < len(target)
    table[name] = {
      'q': q_result.q,
      'q_err': q_result.q_err,
      'candidate_auc': (
        metrics.auc(outputs.scores[name], target) if both else None
      ),
      'num_candidates': int(len(target)),
      'num_targets': int(target.sum()),
    }
  return qr, table


def category_table(metrics_json: dict[str, Any]) -> str:
  """Formats the per-category Q table of a metrics.json dict.

  Args:
    metrics_json: Content of the workdir's metrics.json.

  Returns:
    A Markdown table: each category's Q alone and candidate AUC on the
    test split, then the combined tagger's Q.
  """
  test = metrics_json['test']
  lines = [
    f'Test split: {test["n_events"]} events.',
    '',
    '| category | Q (%) | candidate AUC |',
    '| --- | --- | --- |',
  ]
  for name, row in metrics_json['categories'].items():
    auc = row['candidate_auc']
    auc_text = f'{auc:.3f}' if auc is not None else 'n/a'
    lines.append(
      f'| {name} | {100 * row["q"]:.2f} +- {100 * row["q_err"]:.2f} | '
      f'{auc_text} |'
    )
  lines.append(
    f'| combined | {100 * test["q"]:.2f} +- {100 * test["q_err"]:.2f} | '
    f'{test["auc"]:.3f} (event AUC) |'
  )
  return '\n'.join(lines)


def _write_json(path: pathlib.Path, value: Any) -> None:
  atomic.write_text(path, json.dumps(value, indent=2) + '\n')


def save(
  tagger: CategoryTagger,
  workdir: str | os.PathLike,
  description: dict[str, Any] | None = None,
) -> None:
  """Writes the models and tagger.json to `workdir`, each file atomically.

  tagger.json is written last, so a workdir with a tagger.json is complete.

  Args:
    tagger: The trained tagger.
    workdir: Output folder (created if needed).
    description: Extra entries for tagger.json (training settings).
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  for name, model in tagger.models.items():
    atomic.write_text(workdir / model_file(name), model.model_to_string())
  atomic.write_text(workdir / COMBINER_FILE, tagger.combiner.model_to_string())
  _write_json(
    workdir / TAGGER_FILE,
    {
      'kind': TAGGER_KIND,
      'name': TAGGER_NAME,
      'schema_version': TAGGER_SCHEMA_VERSION,
      'events_schema_version': shards.SCHEMA_VERSION,
      'categories': {
        c.name: {
          'inputs': list(c.inputs),
          'flavor_sign': c.flavor_sign,
          'num_combined': c.num_combined,
          'candidates': c.candidates,
          'model_file': model_file(c.name),
        }
        for c in categories.CATEGORIES
      },
      'combiner_file': COMBINER_FILE,
      **(description or {}),
    },
  )


def load(workdir: str | os.PathLike) -> tuple[CategoryTagger, dict[str, Any]]:
  """Loads a tagger written by `save`.

  Returns:
    The tagger and the content of tagger.json.

  Raises:
    ValueError: The workdir is incomplete, of another kind, or its
      categories and inputs differ from this code's.
  """
  workdir = pathlib.Path(workdir)
  path = workdir / TAGGER_FILE
  if not path.is_file():
    raise ValueError(
      f'{path}: missing; the workdir of a category tagger holds {TAGGER_FILE}, '
      'written last by `python -m experiments.train_categories`. Was the run '
      'finished?'
    )
  try:
    description = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f'{path}: not readable JSON ({e})') from e
  if description.get('kind') != TAGGER_KIND:
    raise ValueError(
      f'{path}: kind {description.get("kind")!r}, expected {TAGGER_KIND!r}'
    )
  saved = description.get('categories', {})
  expected = {c.name: list(c.inputs) for c in categories.CATEGORIES}
  found = {name: entry.get('inputs') for name, entry in saved.items()}
  if found != expected:
    raise ValueError(
      f'{path}: the saved categories or their inputs differ from this '
      f"code's {list(expected)}; retrain the tagger with this release"
    )

  def booster(file_name):
    model_path = workdir / file_name
    if not model_path.is_file():
      raise ValueError(
        f'{model_path}: missing model file; the workdir is incomplete, '
        'retrain with `python -m experiments.train_categories`'
      )
    try:
      return lgb.Booster(model_str=model_path.read_text())
    except (lgb.basic.LightGBMError, UnicodeDecodeError) as e:
      raise ValueError(f'{model_path}: not a LightGBM model ({e})') from e

  models = {}
  for category in categories.CATEGORIES:
    models[category.name] = booster(model_file(category.name))
    if models[category.name].feature_name() != list(category.inputs):
      raise ValueError(
        f'{workdir / model_file(category.name)}: model inputs '
        f'{models[category.name].feature_name()} differ from '
        f'{list(category.inputs)}; retrain the tagger'
      )
  combiner = booster(description.get('combiner_file', COMBINER_FILE))
  return CategoryTagger(models, combiner), description


def load_predictor(
  workdir: str | os.PathLike,
) -> Callable[[shards.Events], np.ndarray]:
  """Returns the saved tagger as a function events -> qr, shape [events].

  Events built in memory without a schema_version attribute are taken to be
  of this code's schema (shards.SCHEMA_VERSION).

  Raises:
    ValueError: The workdir is incomplete (see `load`); the returned function
      raises ValueError for events of another schema version or with bad
      track values.
  """
  tagger, description = load(workdir)
  trained_version = description.get('events_schema_version')

  def predict(events: shards.Events) -> np.ndarray:
    version = events.attrs.get('schema_version', shards.SCHEMA_VERSION)
    if version != trained_version:
      raise ValueError(
        f'events of schema version {version}, the category tagger in '
        f'{workdir} was trained on version {trained_version}; regenerate '
        'the events or retrain the tagger'
      )
    return tagger(events)

  return predict


def train_and_evaluate(
  data_dir: str | os.PathLike,
  workdir: str | os.PathLike,
  config: CategoryTaggerConfig = CategoryTaggerConfig(),
  split_seed: int = 0,
  fractions: tuple[float, float, float] = (0.92, 0.04, 0.04),
) -> dict[str, Any]:
  """Trains on the train split of `data_dir` and writes the tagger's workdir.

  The split is pipeline.split_indices(num_events, split_seed, fractions), the
  same as the deep tagger's; the test split is used only for the final
  figures. Writes the models, tagger.json, metrics.json ({'valid', 'test'}
  summaries and 'categories': per-category figures on the test split) and
  outputs.npz (train_qr, train_q, test_qr, test_q).

  Args:
    data_dir: Folder of event shards with truth.
    workdir: Output folder.
    config: Tagger settings.
    split_seed: Seed of the train/valid/test split.
    fractions: (train, valid, test) fractions.

  Returns:
    The content of metrics.json.
  """
  from flavortag_jax import pipeline

  workdir = pathlib.Path(workdir)
  events = shards.read_data_dir(data_dir)
  split = pipeline.split_indices(events.num_events, split_seed, fractions)
  logging.info(
    'Read %d events from %s; split %s.',
    events.num_events,
    data_dir,
    {k: len(v) for k, v in split.items()},
  )
  train_events = events.take(split['train'])
  tagger = fit(train_events, config)

  results, qr = {}, {}
  for name in ('valid', 'test'):
    part = events.take(split[name])
    if name == 'test':
      qr[name], category_figures = evaluate_categories(tagger, part)
    else:
      qr[name] = tagger(part)
    results[name] = metrics.summary(qr[name], part.events['q_tag'])
    logging.info(
      '%s: Q = %.2f +- %.2f %%, AUC = %.4f.',
      name,
      100 * results[name]['q'],
      100 * results[name]['q_err'],
      results[name]['auc'],
    )
  results['categories'] = category_figures

  rng = np.random.default_rng(config.seed)
  train_index = np.arange(train_events.num_events)
  if len(train_index) > MAX_TRAIN_OUTPUTS:
    train_index = np.sort(rng.choice(train_index, MAX_TRAIN_OUTPUTS, False))
  train_sample = train_events.take(train_index)
  outputs = {
    'train_qr': tagger(train_sample),
    'train_q': train_sample.events['q_tag'],
    'test_qr': qr['test'],
    'test_q': events.events['q_tag'][split['test']],
  }

  save(
    tagger,
    workdir,
    {
      'data_dir': str(data_dir),
      'split_seed': split_seed,
      'fractions': list(fractions),
      'config': dataclasses.asdict(config),
    },
  )
  _write_json(workdir / METRICS_FILE, results)
  with (
    atomic.temporary_path(workdir / OUTPUTS_FILE) as tmp,
    open(tmp, 'wb') as f,
  ):
    np.savez(f, **outputs)
  logging.info('Wrote the category tagger to %s.', workdir)
  return results
