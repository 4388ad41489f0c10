# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure traffic-shifting logic shared by every provider client: no I/O here.

- ``errors``: typed exceptions (``TrafficSpecError(param, message)``, ``UnknownTargetError``, ``JournalError``).
- ``plan``: step plans and abort plans from a user's ``steps`` / ``abort_steps``.
- ``weights``: canary percentage -> per-server or per-group weights for each provider, and back.
- ``state``: desired/current server state, minimal change set, diff rows and the read-back verifier.
- ``journal``: the rollout journal document and the resume decision.
"""

from __future__ import annotations
