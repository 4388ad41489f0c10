# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWS Application Load Balancer client of the traffic modules (``client.py``)."""
