"""The ``qkd-sweep`` commands, one module each, each a ``run(args)`` that :mod:`sweep.cli`
loads by reference when its command is given: a command's libraries (torch for ``trial``,
Ray and Tune for ``sweep``) load only when it runs, and ``--help`` and ``validate`` stay quick."""
