"""A dataloader for deep learning, assembled from ordinary ``Pipe`` stages.

The loader is the fluent recipe

    Pipe(sampler).insert_marker(epoch).flatten()      # indices, an epoch marker after each epoch
    .partition(batchsize, markers="after", ...)       # lists of indices (epoch_end_mode)
    .map(fetch(dataset, collate_fn)).thread(n)        # batches, loaded concurrently
    .order()                                          # back in sampler order

and ``load`` (the module-level function of tinypl 0.1.0) builds exactly these stages: the
functions it accepts as ``map``/``collate_map`` (``pl.map``, ``pl.thread.map``,
``pl.process.map``, or ``functools.partial`` of them) are translated into the matching
``Pipe`` methods. Any other callable is applied to a live stage between
``pl.order.save`` and ``pl.order.load``, as tinypl 0.1.0 did.
"""

from __future__ import annotations

import functools
import numbers
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, final

from . import _plan
from ._compat import map_, order_load, process_map, process_options, thread_map
from ._marker import Marker
from ._pipe import Pipe
from ._runtime import Stage
from ._validate import check_bool, check_callable, check_choice, check_int, check_marker

if TYPE_CHECKING:
    import inspect

__all__ = ["EPOCH_END_MODES", "Dataset", "fetch", "load", "sampler"]

S = TypeVar("S")
B = TypeVar("B")
S_co = TypeVar("S_co", covariant=True)

EpochEndMode = Literal["ignore", "keep_last", "drop_last"]
#: The accepted values of ``epoch_end_mode``.
EPOCH_END_MODES: tuple[str, ...] = ("ignore", "keep_last", "drop_last")


class Dataset(Protocol[S_co]):
    """What a map-style dataset offers: a length and samples by index."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> S_co: ...


class _Shuffler(Protocol):
    def shuffle(self, x: list[int], /) -> None: ...


# -- samplers ----------------------------------------------------------------------------


def _check_epochs(where: str, epochs: int | None) -> int | None:
    return None if epochs is None else check_int(where, "epochs", epochs, minimum=0)


def _check_dataset(where: str, dataset: Any) -> None:
    kind = type(dataset)
    if not (hasattr(kind, "__len__") and hasattr(kind, "__getitem__")):
        raise TypeError(f"{where}: dataset must have __len__ and __getitem__, got {kind.__name__}")


@final
class _Ranks:
    """Which share of every epoch a sampler yields: the strided share of ``rank`` among
    ``world_size`` ranks, as torch's ``DistributedSampler`` cuts it."""

    __slots__ = ("drop_last", "rank", "world_size")

    def __init__(self, where: str, rank: Any, world_size: Any, drop_last: Any) -> None:
        self.world_size = check_int(where, "world_size", world_size, minimum=1)
        self.rank = check_int(where, "rank", rank, minimum=0)
        if self.rank >= self.world_size:
            raise ValueError(
                f"{where}: rank must be < world_size ({self.world_size}), got {self.rank}"
            )
        self.drop_last = check_bool(where, "drop_last", drop_last)

    @property
    def whole(self) -> bool:
        return self.world_size == 1

    def share(self, indices: Sequence[int]) -> Sequence[int]:
        """``padded(indices)[rank::world_size]``: padded by repeating indices from the
        start up to a multiple of ``world_size``, or cut down to one (``drop_last``)."""
        n, world = len(indices), self.world_size
        total = n - n % world if self.drop_last else -(-n // world) * world
        # Slices, so that a range stays a range (lazy for any dataset size).
        head = indices[self.rank : min(n, total) : world]
        first = self.rank + len(head) * world  # this rank's first position past the end
        if first >= total:
            return head
        # At most one padded position per rank; with fewer indices than ranks the
        # indices repeat more than once (as torch's DistributedSampler does).
        return [*head, *(indices[(position - n) % n] for position in range(first, total, world))]

    def __repr__(self) -> str:
        if self.whole:
            return ""
        return f", rank={self.rank}, world_size={self.world_size}, drop_last={self.drop_last}"


_WHOLE = _Ranks("sampler", 0, 1, False)


@final
class _Sequential:
    """Iterable over epochs; each iteration starts at the first epoch."""

    __slots__ = ("dataset", "epochs", "ranks")

    def __init__(self, dataset: Dataset[Any], epochs: int | None, ranks: _Ranks) -> None:
        self.dataset = dataset
        self.epochs = epochs
        self.ranks = ranks

    #: Every iteration yields the same epochs, so a run over it can be replayed (resumed).
    _tinypl_replayable = True

    def __iter__(self) -> Iterator[Sequence[int]]:
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            indices = range(len(self.dataset))
            yield indices if self.ranks.whole else self.ranks.share(indices)
            epoch += 1

    def __repr__(self) -> str:
        return f"sampler.sequential(epochs={self.epochs}{self.ranks!r})"


@final
class _Shuffle:
    """Iterable over epochs of shuffled indices."""

    __slots__ = ("dataset", "epochs", "ranks", "rng", "seeded")

    def __init__(self, dataset: Dataset[Any], rng: Any, epochs: int | None, ranks: _Ranks) -> None:
        self.dataset = dataset
        self.rng = rng
        self.epochs = epochs
        self.ranks = ranks
        #: An int seed: every iteration starts a new ``random.Random(seed)``.
        self.seeded = isinstance(rng, numbers.Integral) and not isinstance(rng, bool)

    @property
    def _tinypl_replayable(self) -> bool:
        # A seed recomputes every epoch's permutation; a live generator cannot.
        return self.seeded

    def __iter__(self) -> Iterator[list[int]]:
        rng: _Shuffler = random.Random(int(self.rng)) if self.seeded else self.rng
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            # Every rank permutes the whole epoch with the same generator, so the ranks
            # agree on the permutation and their strided shares are disjoint.
            indices = list(range(len(self.dataset)))
            rng.shuffle(indices)
            yield indices if self.ranks.whole else list(self.ranks.share(indices))
            epoch += 1

    def __repr__(self) -> str:
        return f"sampler.shuffle(epochs={self.epochs}{self.ranks!r})"


@final
class sampler:  # a namespace, spelled as in tinypl 0.1.0
    """Samplers: iterables that yield one iterable of dataset indices per epoch.

    A sampler is re-iterable: every iteration (every run of a ``Pipe`` built on it)
    starts again at the first epoch. Any iterable of index iterables can serve as a
    sampler, e.g. ``[[0, 2, 4], [1, 3]]`` for two epochs of different sizes.

    Examples:
        >>> import random
        >>> import tinypl as pl
        >>> list(pl.dataloader.sampler.sequential(range(3), epochs=2))
        [range(0, 3), range(0, 3)]
        >>> rng = random.Random(1)
        >>> list(pl.dataloader.sampler.shuffle(range(5), rng=rng, epochs=1))
        [[2, 3, 4, 0, 1]]
    """

    def __init__(self) -> None:
        raise TypeError("pl.dataloader.sampler is a namespace; call sampler.sequential(...)")

    @staticmethod
    def sequential(
        dataset: Dataset[Any],
        epochs: int | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> Iterable[Sequence[int]]:
        """``range(len(dataset))`` once per epoch; forever when ``epochs`` is None.

        ``len(dataset)`` is read at the start of every epoch.

        For data-parallel training on ``world_size`` ranks, each rank builds its sampler
        with its own ``rank`` (``0 <= rank < world_size``) and gets its share of every
        epoch, as from torch's ``DistributedSampler``: the epoch is padded by repeating
        indices from its start up to a multiple of ``world_size`` (``drop_last=True``:
        cut down to one instead), and rank ``r`` gets ``padded[r::world_size]``. The
        shares are disjoint and of equal length. A share is a ``range``, or a ``list``
        when it holds padding.

        Examples:
            >>> import tinypl as pl
            >>> list(pl.dataloader.sampler.sequential("abc", epochs=1))
            [range(0, 3)]
            >>> [list(pl.dataloader.sampler.sequential(range(5), epochs=1, rank=r,
            ...                                         world_size=2)) for r in (0, 1)]
            [[range(0, 5, 2)], [[1, 3, 0]]]
            >>> next(iter(pl.dataloader.sampler.sequential(range(5), rank=1, world_size=2,
            ...                                            drop_last=True)))
            range(1, 4, 2)
        """
        where = "sampler.sequential"
        _check_dataset(where, dataset)
        epochs = _check_epochs(where, epochs)
        return _Sequential(dataset, epochs, _Ranks(where, rank, world_size, drop_last))

    @staticmethod
    def shuffle(
        dataset: Dataset[Any],
        rng: Any = random,
        epochs: int | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> Iterable[list[int]]:
        """A fresh random permutation of ``range(len(dataset))`` per epoch.

        ``rng`` is anything with a ``shuffle(list)`` method: the ``random`` module
        (default), a ``random.Random`` (a seeded one gives a reproducible order; it is
        shared, so a second iteration continues its sequence) or a
        ``numpy.random.Generator``. An ``int`` is a seed: every iteration of the sampler
        starts a new ``random.Random(seed)`` and so repeats the same epochs.

        ``rank``, ``world_size`` and ``drop_last`` cut each permutation into the ranks'
        shares as in ``sequential``. Every rank must draw the same permutation, so with
        ``world_size > 1`` the ``random`` module (whose state differs between processes)
        is refused: pass the same int seed on every rank (or a generator seeded alike).

        Examples:
            >>> import tinypl as pl
            >>> shuffled = pl.dataloader.sampler.shuffle(range(4), rng=7, epochs=2)
            >>> # an int seed: every iteration repeats
            >>> list(shuffled) == list(shuffled)
            True
            >>> sorted(next(iter(shuffled)))
            [0, 1, 2, 3]
            >>> shares = [next(iter(pl.dataloader.sampler.shuffle(
            ...     range(6), rng=0, rank=r, world_size=3))) for r in range(3)]
            >>> sorted(sum(shares, [])), [len(share) for share in shares]
            ([0, 1, 2, 3, 4, 5], [2, 2, 2])
        """
        where = "sampler.shuffle"
        _check_dataset(where, dataset)
        epochs = _check_epochs(where, epochs)
        ranks = _Ranks(where, rank, world_size, drop_last)
        shuffle = _Shuffle(dataset, rng, epochs, ranks)
        if not shuffle.seeded and not callable(getattr(rng, "shuffle", None)):
            raise TypeError(
                f"{where}: rng must be an int seed or have a shuffle method, got"
                f" {type(rng).__name__}"
            )
        if rng is random and not ranks.whole:
            raise ValueError(
                f"{where}: with world_size > 1, rng must be an int seed or a generator"
                " seeded alike on every rank (the random module's state differs between"
                " processes, so the ranks' shares would overlap)"
            )
        return shuffle


# -- fetching ----------------------------------------------------------------------------


class _Fetch(Generic[S, B]):
    """Indices to a collated batch (what ``fetch`` returns). Picklable when the dataset
    and ``collate_fn`` are, so it can run in worker processes."""

    def __init__(
        self, dataset: Dataset[S], collate_fn: Callable[[list[S]], B] | None = None
    ) -> None:
        self.dataset = dataset
        self.collate_fn = collate_fn

    def __call__(self, indices: Iterable[int]) -> B:
        getitem = self.dataset.__getitem__
        samples = [getitem(index) for index in indices]
        collate = self.collate_fn
        return samples if collate is None else collate(samples)  # type: ignore[return-value]

    def __repr__(self) -> str:
        # What Pipe reprs and explain() show for the stage function.
        if self.collate_fn is None:
            return f"fetch({type(self.dataset).__name__})"
        collate = getattr(self.collate_fn, "__qualname__", None) or repr(self.collate_fn)
        return f"fetch({type(self.dataset).__name__}, {collate})"


def fetch(
    dataset: Dataset[S], collate_fn: Callable[[list[S]], B] | None = None
) -> Callable[[Iterable[int]], B]:
    """A function from a list of indices to ``collate_fn([dataset[i] for i in indices])``
    (``collate_fn=None``: the list of samples itself).

    Map it over the batches of indices from ``partition``, in threads or processes.

    Examples:
        >>> import tinypl as pl
        >>> load_batch = pl.dataloader.fetch("abcdef", "".join)
        >>> load_batch([0, 2, 4])
        'ace'
        >>> list(pl.Pipe([[5, 4], [3]]).map(load_batch).thread(2).order())
        ['fe', 'd']
    """
    _check_dataset("fetch", dataset)
    if collate_fn is not None:
        check_callable("fetch", "collate_fn", collate_fn)
    return _Fetch(dataset, collate_fn)


# -- load --------------------------------------------------------------------------------


class _FullBatch:
    """Keeps only batches of exactly ``size`` items (``epoch_end_mode="drop_last"``)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, batch: Sequence[Any]) -> bool:
        return len(batch) == self.size

    def __repr__(self) -> str:
        return f"full_batch({self.size})"


def _batches(pipe: Pipe[int], batchsize: int, mode: str) -> Pipe[list[int]]:
    """``partition`` for an epoch end mode: the epoch marker stays after the batch that
    completes the epoch, and ends the batch unless the mode is ``"ignore"``."""
    batches = pipe.partition(batchsize, markers="after", split_on_marker=mode != "ignore")
    if mode == "drop_last":
        batches = batches.filter(_FullBatch(batchsize))
    return batches


Runner = Callable[..., Iterable[Any]]

# The module-level functions ``load`` translates into ``Pipe`` stages, the ``Pipe`` method
# each stands for, and the signature their arguments are bound with. Every argument but
# the first two (the stage and the function) is passed on, by name, to the method.
@functools.cache
def _concurrent() -> dict[Any, tuple[str, inspect.Signature]]:
    import inspect  # here, not at the top: it is slow to import

    return {
        thread_map: ("thread", inspect.signature(thread_map)),
        process_map: ("process", inspect.signature(process_map)),
    }


def _unwrap(runner: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The function behind (nested) ``functools.partial`` objects and the arguments the
    partials add after ``(pipe, fn)``."""
    args: tuple[Any, ...] = ()
    keywords: dict[str, Any] = {}
    while isinstance(runner, functools.partial):
        args = runner.args + args
        keywords = {**runner.keywords, **keywords}
        runner = runner.func
    return runner, args, keywords


def _apply(where: str, runner: Runner, pipe: Pipe[Any], fn: Callable[[Any], Any]) -> Pipe[Any]:
    """``runner(pipe, fn)`` as ``Pipe`` stages, in the order of ``pipe``."""
    function, args, keywords = _unwrap(runner)
    if function is map_ and not args and not keywords:
        return pipe.map(fn)
    if function in _concurrent():
        method, signature = _concurrent()[function]
        try:
            bound = signature.bind(None, None, *args, **keywords)
        except TypeError as error:
            raise TypeError(f"{where}: cannot call {function.__qualname__}: {error}") from None
        bound.apply_defaults()
        names = list(signature.parameters)[2:]  # after the stage and the function
        options = {name: bound.arguments[name] for name in names}
        if method == "process":
            options = process_options(where, options)
        concurrent: Pipe[Any] = getattr(pipe.map(fn), method)(**options)
        return concurrent.order()
    # Some other function of (stage, fn): run it between pl.order.save and pl.order.load,
    # with an order window as large as what the stages it builds can hold (0.1.0's rule:
    # a save without maxsize, sized by the load).
    saved = iter(Pipe(_plan.Save(pipe.plan, None, token=_plan.OrderToken())))
    return Pipe(order_load(runner(saved, fn), saved))


def load(  # noqa: PLR0917 (the positional signature of tinypl 0.1.0)
    dataset: Dataset[S],
    batchsize: int,
    collate_fn: Callable[[list[S]], B] | None = None,
    map: Runner = map_,
    collate_map: Runner | None = None,
    sampler: Iterable[Iterable[int]] | None = None,
    epoch_end_mode: EpochEndMode = "ignore",
    *,
    epoch_marker: Marker | None = None,
    state: Mapping[str, Any] | None = None,
) -> Stage[B]:
    """A live stage yielding the batches ``collate_fn([dataset[i] for i in batch])``.

    ``sampler`` yields one iterable of indices per epoch (default:
    ``sampler.sequential(dataset)``, forever). ``map`` (default ``pl.map``) loads the
    samples: ``pl.map`` (in the consumer's thread), or e.g.
    ``functools.partial(pl.thread.map, workers=4)`` or
    ``functools.partial(pl.process.map, workers=2)``. ``collate_map`` likewise applies
    ``collate_fn``; with ``None``, each batch is loaded and collated in one call of
    ``map``. Whatever the backends, batches come out in sampler order.

    ``epoch_end_mode``: ``"ignore"`` lets batches run across epoch boundaries,
    ``"keep_last"`` keeps the shorter last batch of an epoch, ``"drop_last"`` drops it.

    After the batch that completes each epoch the stage carries an epoch marker, so that
    ``pl.marker.until(loader, marker)`` iterates exactly one epoch. Pass your own
    ``epoch_marker`` to name it; the loader carries no other marker (unless ``sampler``
    is itself a tinypl stage that carries some), so ``pl.marker.until(loader)`` (any
    marker) works without it.

    ``load`` builds the stages of the fluent recipe (see the module documentation) and
    starts them, as the module-level functions do. ``state`` (from the stage's
    ``state_dict()``) resumes a loader built with the same arguments mid-epoch.

    Examples:
        >>> import tinypl as pl
        >>> epoch = pl.Marker("epoch")
        >>> loader = pl.dataloader.load(range(10), 4, epoch_end_mode="keep_last",
        ...                             epoch_marker=epoch)
        >>> list(pl.marker.until(loader, epoch))
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        >>> next(loader)
        [0, 1, 2, 3]
        >>> loader.close()
    """
    where = "dataloader.load"
    _check_dataset(where, dataset)
    check_int(where, "batchsize", batchsize)
    if collate_fn is not None:
        check_callable(where, "collate_fn", collate_fn)
    check_callable(where, "map", map)
    if collate_map is not None:
        check_callable(where, "collate_map", collate_map)
    check_choice(where, "epoch_end_mode", epoch_end_mode, EPOCH_END_MODES)
    check_marker(where, "epoch_marker", epoch_marker, optional=True)
    marker = Marker("epoch") if epoch_marker is None else epoch_marker
    epochs = _Sequential(dataset, None, _WHOLE) if sampler is None else sampler

    indices: Pipe[int] = Pipe(epochs).insert_marker(marker).flatten()
    pipe: Pipe[Any]
    if collate_map is None:
        # One call of ``map`` loads and collates a whole batch.
        batches = _batches(indices, batchsize, epoch_end_mode)
        pipe = _apply(where, map, batches, _Fetch(dataset, collate_fn))
    elif _unwrap(map)[0] is map_:
        # Samples are loaded here, collated by ``collate_map``.
        batches = _batches(indices, batchsize, epoch_end_mode)
        pipe = _apply(where, collate_map, batches.map(_Fetch(dataset)), _collate(collate_fn))
    else:
        # Samples are loaded one by one by ``map``, batched here, collated by ``collate_map``.
        # The indices come from a live stage: after a flatten in the same plan, order()
        # (and a process stage) would take whole epochs as their unit of work.
        samples = _apply(where, map, Pipe(iter(indices)), dataset.__getitem__)
        pipe = _apply(
            where, collate_map, _batches(samples, batchsize, epoch_end_mode), _collate(collate_fn)
        )
    return pipe.iter(state=state)


def _keep(batch: list[Any]) -> list[Any]:
    return batch


def _collate(collate_fn: Callable[[list[Any]], Any] | None) -> Callable[[list[Any]], Any]:
    return _keep if collate_fn is None else collate_fn
