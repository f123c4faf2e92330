"""Twenty stores at real places in Hangzhou (WGS-84, to about 100 m), for assignment tests."""

from __future__ import annotations

import json
from pathlib import Path

from hq.orders.assign import Site, WeekHours

HANGZHOU: tuple[tuple[str, float, float], ...] = (
    ("HZ01-XIHU", 30.2590, 120.1490),  # West Lake, Hubin
    ("HZ02-WULIN", 30.2741, 120.1644),  # Wulin Square
    ("HZ03-EASTSTN", 30.2906, 120.2126),  # Hangzhou East railway station
    ("HZ04-CITYSTN", 30.2431, 120.1826),  # Hangzhou (City) railway station
    ("HZ05-QIANJIANG", 30.2459, 120.2108),  # Qianjiang New City, Citizen Centre
    ("HZ06-BINJIANG", 30.2084, 120.2114),  # Binjiang, Jiangnan Avenue
    ("HZ07-XIAOSHAN", 30.1666, 120.2706),  # Xiaoshan, Shixin Road
    ("HZ08-ZIJINGANG", 30.3078, 120.0843),  # Zhejiang University, Zijingang
    ("HZ09-XIXI", 30.2706, 120.0635),  # Xixi Wetland
    ("HZ10-GONGCHEN", 30.3190, 120.1431),  # Grand Canal, Gongchen Bridge
    ("HZ11-XIASHA", 30.3039, 120.3425),  # Xiasha
    ("HZ12-LINPING", 30.4215, 120.3005),  # Linping
    ("HZ13-FUTURECITY", 30.2907, 119.9970),  # Yuhang, Future Sci-Tech City
    ("HZ14-LIANGZHU", 30.3755, 120.0316),  # Liangzhu
    ("HZ15-HUBIN", 30.2525, 120.1661),  # Hubin, Yintai
    ("HZ16-HUANGLONG", 30.2720, 120.1366),  # Huanglong
    ("HZ17-SANDUN", 30.3380, 120.0950),  # Sandun
    ("HZ18-JIUBAO", 30.3460, 120.2800),  # Jiubao
    ("HZ19-AIRPORT", 30.2295, 120.4340),  # Xiaoshan airport
    ("HZ20-LINGYIN", 30.2408, 120.1016),  # Lingyin Temple
)


def sites(capacity: int = 10, hours: WeekHours | None = None) -> list[Site]:
    """The twenty stores, open 07:00-21:00 every day unless ``hours`` says otherwise."""
    h = hours or WeekHours.daily(7 * 60, 21 * 60)
    return [Site(sid, lat, lon, h, capacity) for sid, lat, lon in HANGZHOU]


def registry_toml(path: Path, places: int = 4, hours: str = "07:00-21:00") -> Path:
    """The twenty Hangzhou stores as a registry file (TOML), XIHU closed on Mondays."""
    out = []
    for sid, lat, lon in HANGZHOU:
        h = (f'{{mon = "closed", tue = "{hours}", wed = "{hours}", thu = "{hours}", '
             f'fri = "{hours}", sat = "{hours}", sun = "{hours}"}}' if sid == "HZ01-XIHU"
             else json.dumps(hours))
        out.append(f'[[stores]]\nid = "{sid}"\nname = "{sid[5:].title()}店"\n'
                   f'address = "杭州市 {sid}"\nlat = {lat}\nlon = {lon}\nhours = {h}\n'
                   f"pickup_per_slot = {places}\n")
    path.write_text("\n".join(out), encoding="utf-8")
    return path
