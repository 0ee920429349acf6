"""The MultiLangDaemon without Java: ``kinesio multilang app.properties`` runs an unchanged
amazon_kclpy (or Node, Ruby) multilang application on kinesio.

It reads the daemon's properties file (:func:`load_config`), starts the ``executableName``
command once per leased shard and speaks the multilang protocol with it over stdin/stdout
(:class:`MultiLangProcessor`), with kinesio's leases, fenced checkpoints, resharding and
deaggregation underneath.
"""

from kinesio.multilang._daemon import MultiLangProcessor, kcl_error_name, run
from kinesio.multilang._properties import MultiLangConfig, load_config, parse_properties
from kinesio.multilang._protocol import Child, ChildProcessError, record_message

__all__ = [
    "Child",
    "ChildProcessError",
    "MultiLangConfig",
    "MultiLangProcessor",
    "kcl_error_name",
    "load_config",
    "parse_properties",
    "record_message",
    "run",
]
