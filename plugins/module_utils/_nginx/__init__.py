# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx OSS upstream-file client (``client.NginxClient``): render, parse, validate, one graceful reload."""

from __future__ import annotations
