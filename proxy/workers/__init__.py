"""``cheaplm serve --workers N``: N gateway processes serving one port.

The supervisor (supervisor.py) binds the listening socket once and starts N workers
(worker.py, run as ``python -m proxy.workers INDEX FD``), each a whole gateway (``serve``
on the inherited socket: its own store connection and instance lease, key cache,
limiters and, without an upstream, simulator). It hands each the one configuration it
loaded (with the Responses secret resolved once, so every worker opens the others'
reasoning items), starts a worker again when one dies (policy.py: a backoff, so a crash
loop does not spin), turns SIGTERM and SIGINT into a graceful stop of every worker and
kills the ones still running after the grace. A worker watches the pipe it got its
configuration through and stops as on SIGTERM when the supervisor is gone, even killed.
"""
