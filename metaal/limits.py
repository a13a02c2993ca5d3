"""Bounds checked before allocating: what a YAML text may expand to, and whether a batch of
episodes fits in this machine's memory. Each refusal names the input and the limit."""

from __future__ import annotations

import math
import os

import yaml

from metaal.errors import InputError

# A config is a few hundred values; YAML aliases can make a few lines stand for billions.
MAX_YAML_VALUES = 100_000


def yaml_values(node: yaml.Node, memo: dict[int, int] | None = None) -> int:
    """How many values a composed YAML node stands for once every alias is expanded (an alias is
    the same node object again, so the count is memoised per node and costs one pass)."""
    memo = {} if memo is None else memo
    if id(node) not in memo:
        memo[id(node)] = 0  # a recursive alias counts as one value while it is being counted
        if isinstance(node, yaml.SequenceNode):
            memo[id(node)] = 1 + sum(yaml_values(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[id(node)] = 1 + sum(yaml_values(k, memo) + yaml_values(v, memo) for k, v in node.value)
        else:
            memo[id(node)] = 1
    return memo[id(node)]


def load_yaml(text: str | bytes, what: str, error: type[Exception] = InputError):
    """yaml.safe_load, refusing (`error`, naming `what`) a text that is not YAML, or whose aliases
    expand to more than MAX_YAML_VALUES values, before anything is built from it."""
    loader = yaml.SafeLoader(text)  # composed once: counted, then built from the same nodes
    try:
        node = loader.get_single_node()
        size = 0 if node is None else yaml_values(node)
        if size > MAX_YAML_VALUES:
            raise error(f"{what} expands to {size:,} values through YAML aliases (&anchor / *alias), more than "
                        f"the {MAX_YAML_VALUES:,} a config may hold; write the values out instead of nesting aliases")
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        raise error(f"{what}: not valid YAML: {e}") from None
    finally:
        loader.dispose()


def available_memory() -> int:
    """Bytes of memory available to a new allocation: MemAvailable on Linux, else physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(count: int, bytes_each: int, what: str, hint: str) -> None:
    """Refuse `count` items of `bytes_each` bytes when together they exceed the memory available."""
    need, have = count * bytes_each, available_memory()
    if need > have:
        raise InputError(f"{what}: {count:,} x {_size(bytes_each)} = {_size(need)}, more than the {_size(have)} of "
                         f"memory available on this machine; {hint}")


def _size(n: float) -> str:
    unit = min(int(math.log(max(n, 1), 1024)), 4)
    return f"{n / 1024 ** unit:.3g} {('B', 'KiB', 'MiB', 'GiB', 'TiB')[unit]}"
