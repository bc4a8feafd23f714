"""The CLI's subcommands, one module per subject: ``cmd_<name>(settings, args) -> exit code``.

:mod:`..cli` parses the arguments and dispatches here through its table;
what is printed and the exit codes come from :mod:`..output`.

- :mod:`.jobs`: ``run`` (the daemon), ``enqueue``, ``ingest``, ``reprocess``
- :mod:`.watchlist`: ``config show|validate|push``, ``schedule show``
- :mod:`.dead_letters`: ``dlq list|replay|purge``
- :mod:`.runs`: ``runs list|show``, ``verify``
- :mod:`.hooks`: ``hooks list|resend``
- :mod:`.health`: ``health``
"""
