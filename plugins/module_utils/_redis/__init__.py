# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis and Sentinel over RESP2 (``client.RedisClient``, standard library only) and the Sentinel logic that
decides who the master is and what to change (``sentinel``)."""

from __future__ import annotations
