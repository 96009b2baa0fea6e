"""A local CoinGecko API v3 simulator: deterministic data, plans and keys, switchable faults.

    from pipelines.simulator import Simulator
    with Simulator() as sim:
        requests.get(f"{sim.base_url}/coins/bitcoin/market_chart", params={...})
"""

from .faults import KINDS as FAULT_KINDS
from .faults import FaultError
from .server import Simulator

__all__ = ["FAULT_KINDS", "FaultError", "Simulator"]
