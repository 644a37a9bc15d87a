"""How the target side and the draft side of the parallel methods talk.

- `messages`: what crosses (`DraftRequest`, `Decision`, `BranchProposal`) and the `DraftLink` protocol;
- `codec`: each message as flat values (`Frame`) and back, for transports that serialize;
- `inline`: `InlineLink`, the draft in the caller's process (serial rounds);
- `process`: `WorkerLink`, the draft in a spawned worker process (parallel rounds).

A new transport is one new module with a `DraftLink`. This package imports only `messages`
eagerly: `inline` and `process` import the drafter (`specbranch.decoders.drafter`), which
imports `messages`, so importing them here would make a cycle.
"""

from specbranch.transport.messages import BranchProposal, Decision, DraftLink, DraftRequest

__all__ = ["Decision", "DraftLink", "DraftRequest", "BranchProposal"]
