"""Device meshes and batch placement for data-parallel training.

Data parallelism here means one copy of the parameters on every device and
each batch of events split along its batch axis over a one-dimensional mesh
whose only axis is named ``data``. The step function is the same jitted
function as on one device: with the batch sharded and the parameters
replicated, XLA partitions the forward and backward passes and inserts the
all-reduce of the gradients itself, so no collective is written by hand.

Several hosts (a TPU pod slice, a GPU cluster) run the same program once per
host. Each process calls :func:`initialize_distributed` before any other JAX
call; afterwards ``jax.devices()`` lists the devices of all hosts, the mesh
spans all of them, and every host feeds the shards that live on its own
devices.

Both examples expect the repository, its .venv, the data folder and the
workdir at the same path on every host (a shared file system such as NFS or
Filestore); every process reads the data itself.

TPU pod slice (every worker runs the same command; the TPU runtime tells JAX
the coordinator, the number of processes and the process index)::

  gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all --command \\
    'cd /shared/flavortag_jax && .venv/bin/python -m experiments.train \\
       --config=experiments/configs/reference.py --workdir=/shared/run \\
       --config.data_dir=/shared/data --config.data_parallel=True \\
       --distributed'

SLURM GPU cluster (one task per GPU; JAX reads the SLURM_* variables for the
coordinator, the number of processes and the process index, and gives each
task its own GPU)::

  #SBATCH --nodes=4 --ntasks-per-node=8 --gpus-per-task=1
  srun .venv/bin/python -m experiments.train \\
    --config=experiments/configs/reference.py --workdir=/shared/run \\
    --config.data_dir=/shared/data --config.data_parallel=True --distributed

Elsewhere pass the coordinator explicitly to every process (here process 0
of 2)::

  python -m experiments.train ... --distributed \\
    --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0

`experiments.sweep` takes the same flags; there every group of models is
replicated and the shared batches are split.

Every host holds the whole data set (12 M events x 140 features x 4 bytes =
6.7 GB at the reference scale) and shuffles it with the same key, so all
hosts agree on every batch; :func:`shard_batches` then hands each device its
slice of each batch.

NOTE: the tests cover several devices in one process (fake CPU devices),
where data-parallel training equals single-device training; a run over
several hosts is not covered by them.
"""

from collections.abc import Sequence

from absl import flags, logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

DATA_AXIS = 'data'


def make_data_mesh(num_devices: int | None = None) -> Mesh:
  """Builds a one-dimensional mesh over devices with the axis ``data``.

  Args:
    num_devices: how many devices to use, taken in the order of
      ``jax.devices()`` (all hosts); None or 0 for all of them.

  Returns:
    A ``jax.sharding.Mesh`` of shape [num_devices] with axis name ``data``.

  Raises:
    ValueError: when more devices are asked for than exist, or a negative
      number.
  """
  devices = jax.devices()
  if num_devices is None or num_devices == 0:
    num_devices = len(devices)
  if num_devices < 0 or num_devices > len(devices):
    raise ValueError(
      f'A data mesh of {num_devices} devices was requested but '
      f'{len(devices)} {devices[0].platform} devices are visible; ask for '
      f'1 to {len(devices)} devices, or 0 for all of them.'
    )
  return jax.make_mesh(
    (num_devices,), (DATA_AXIS,), devices=devices[:num_devices]
  )


def mesh_from_config(config) -> Mesh | None:
  """Chooses single-device or data-parallel training from a run config.

  Args:
    config: an ``ml_collections.ConfigDict``; data parallelism is switched on
      by ``config.data_parallel = True`` and sized by ``config.num_devices``
      (0 or absent for every visible device).

  Returns:
    The data mesh, or None for plain single-device training (also when the
    config has no ``data_parallel`` field).
  """
  if not config.get('data_parallel', False):
    return None
  return make_data_mesh(config.get('num_devices', 0))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding that keeps a full copy of an array on every mesh device."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """The sharding that splits axis ``batch_axis`` over the data axis.

  Args:
    mesh: a mesh with the axis ``data``.
    batch_axis: the array axis that counts events; 1 for stacked epochs of
      batches shaped [steps, batch, ...].

  Returns:
    A ``NamedSharding``; the other array axes are not split.
  """
  spec = (None,) * batch_axis + (DATA_AXIS,)
  return NamedSharding(mesh, PartitionSpec(*spec))


def replicate(tree, mesh: Mesh):
  """Places every array of a pytree on all mesh devices, whole.

  Args:
    tree: a pytree of arrays (parameters, optimizer state), identical on
      every host.
    mesh: the data mesh.

  Returns:
    The same pytree of global ``jax.Array`` values, replicated.
  """
  sharding = replicated_sharding(mesh)
  return jax.tree.map(lambda leaf: _place(leaf, sharding), tree)


def shard_batches(array, mesh: Mesh, batch_axis: int = 1):
  """Splits a stack of batches over the data axis of the mesh.

  Args:
    array: shape [steps, batch, ...] (or any shape with ``batch_axis``
      counting events), the same on every host.
    mesh: the data mesh.
    batch_axis: the axis to split; 1 for [steps, batch, ...].

  Returns:
    A global ``jax.Array`` of the same shape and values, each device holding
    batch / num_devices events of every batch.

  Raises:
    ValueError: when the batch does not divide evenly over the devices.
  """
  batch = array.shape[batch_axis]
  if batch % mesh.size:
    raise ValueError(
      f'A batch of {batch} events cannot be split evenly over {mesh.size} '
      f'devices; choose a batch size that is a multiple of {mesh.size}.'
    )
  return _place(array, batch_sharding(mesh, batch_axis))


def _place(array, sharding: NamedSharding):
  """Puts a host-identical array onto a (possibly multi-host) sharding."""
  if jax.process_count() == 1:
    return jax.device_put(array, sharding)
  local = np.asarray(array)
  return jax.make_array_from_process_local_data(
    sharding, local, global_shape=local.shape
  )


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Registers the flags that start multi-host JAX (see module docstring).

  Args:
    flag_values: the absl flag registry to add them to.
  """
  flags.DEFINE_bool(
    'distributed',
    False,
    'Call jax.distributed.initialize before anything else (several hosts).',
    flag_values=flag_values,
  )
  flags.DEFINE_string(
    'coordinator_address',
    None,
    'host:port of process 0; leave unset on TPU pods and under SLURM.',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'num_processes',
    None,
    'Total number of processes; leave unset on TPU pods and under SLURM.',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    'process_id',
    None,
    'Index of this process in 0..num_processes-1; unset on TPU and SLURM.',
    flag_values=flag_values,
  )
  flags.DEFINE_list(
    'local_device_ids',
    None,
    'Comma-separated device ids this process may use (default: automatic).',
    flag_values=flag_values,
  )


def initialize_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
  """Starts multi-host JAX when ``--distributed`` is given.

  Args:
    flag_values: a parsed absl flag registry holding the flags of
      :func:`define_flags`.

  Returns:
    True when ``jax.distributed.initialize`` was called.
  """
  if not flag_values.distributed:
    return False
  ids = flag_values.local_device_ids
  initialize_distributed(
    coordinator_address=flag_values.coordinator_address,
    num_processes=flag_values.num_processes,
    process_id=flag_values.process_id,
    local_device_ids=None if ids is None else [int(i) for i in ids],
  )
  return True


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  local_device_ids: Sequence[int] | None = None,
) -> None:
  """Joins this process to a multi-host JAX program.

  Must run before any other JAX call. On TPU pods and under SLURM or Open
  MPI every argument may stay None and JAX finds them itself.

  Args:
    coordinator_address: 'host:port' of process 0.
    num_processes: total number of processes.
    process_id: this process's index, 0 to num_processes - 1.
    local_device_ids: devices this process may use.

  Raises:
    ValueError: when some but not all of the explicit arguments are given,
      or the process index is out of range.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit) and any(v is None for v in explicit):
    raise ValueError(
      'Multi-host start needs either all of --coordinator_address, '
      '--num_processes and --process_id, or none of them (automatic on TPU '
      f'pods and SLURM); found coordinator_address={coordinator_address!r}, '
      f'num_processes={num_processes!r}, process_id={process_id!r}.'
    )
  if num_processes is not None and not 0 <= process_id < num_processes:
    raise ValueError(
      f'process_id must lie in 0..{num_processes - 1} for '
      f'{num_processes} processes; found {process_id}.'
    )
  jax.distributed.initialize(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
    local_device_ids=local_device_ids,
  )
  logging.info(
    'Joined multi-host JAX as process %d of %d.',
    jax.process_index(),
    jax.process_count(),
  )


def describe_devices() -> str:
  """One line naming the devices this program sees, for the run log."""
  devices = jax.devices()
  return (
    f'process {jax.process_index()} of {jax.process_count()}: '
    f'{jax.local_device_count()} local and {len(devices)} global '
    f'{devices[0].platform} devices ({devices[0].device_kind})'
  )
