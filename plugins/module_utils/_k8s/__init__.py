# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes client of the traffic modules (``client.py``) and its route logic (``routes.py``)."""
