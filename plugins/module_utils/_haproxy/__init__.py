# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy runtime API client (``client.HAProxyClient``) and its typed errors."""

from __future__ import annotations
