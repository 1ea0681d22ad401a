#!/usr/bin/env python3
"""Regenerate the modelled parts of Suanwang's reference network from ../shared/data.

The TOML/CSV files under data/ are the source of truth that the code reads; this script only
documents *how* the modelled numbers were made and lets anyone rebuild them. It needs the
shared reference facts (../shared/data) and nothing else (Python 3 standard library).

    python3 data/tools/build_reference.py ../shared/data data/

Everything this script writes is labelled `modelled` in the output, with the method.
"""
import csv, math, os, sys
from collections import defaultdict

SHARED = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
OUT = sys.argv[2] if len(sys.argv) > 2 else "data"

# --- topology ------------------------------------------------------------------------------
HUBS = [  # id, name_cn, name_en, side, clusters
    ("jingjinji", "京津冀", "Beijing-Tianjin-Hebei", "east", ["zhangjiakou"]),
    ("changsanjiao", "长三角", "Yangtze River Delta", "east", ["yrd_demo_zone", "wuhu"]),
    ("yuegangao", "粤港澳大湾区", "Guangdong-HK-Macao Greater Bay Area", "east", ["shaoguan"]),
    ("chengyu", "成渝", "Chengdu-Chongqing", "east", ["tianfu", "chongqing"]),
    ("neimenggu", "内蒙古", "Inner Mongolia", "west", ["horinger"]),
    ("guizhou", "贵州", "Guizhou", "west", ["guian"]),
    ("gansu", "甘肃", "Gansu", "west", ["qingyang"]),
    ("ningxia", "宁夏", "Ningxia", "west", ["zhongwei"]),
]
# Non-hub green regions (R1: "non-hub green regions"): hydro- and solar-rich provinces whose
# 2022 grid factors are the lowest in China (Qinghai 0.1567, Yunnan 0.1073 kg/kWh, MEE 2022).
REGIONS = [
    ("qinghai", "青海", "Qinghai", "Qinghai", [
        ("qinghai-xining", "西宁", 36.62, 101.78),
        ("qinghai-gonghe", "海南州共和", 36.28, 100.62)]),
    ("yunnan", "云南", "Yunnan", "Yunnan", [
        ("yunnan-kunming", "昆明", 25.04, 102.72),
        ("yunnan-qujing", "曲靖", 25.49, 103.80)]),
]
# Sites: one data centre per start area (起步区) of each cluster, at the start area's point.
SITE_NAMES = {  # start_area_cn -> (site id, province_en)
    "怀来县": ("zhangjiakou-huailai", "Hebei"), "张北县": ("zhangjiakou-zhangbei", "Hebei"),
    "宣化区": ("zhangjiakou-xuanhua", "Hebei"),
    "上海市青浦区": ("yrd-qingpu", "Shanghai"), "苏州市吴江区": ("yrd-wujiang", "Jiangsu"),
    "嘉兴市嘉善县": ("yrd-jiashan", "Zhejiang"),
    "芜湖市鸠江区": ("wuhu-jiujiang", "Anhui"), "芜湖市弋江区": ("wuhu-yijiang", "Anhui"),
    "无为市": ("wuhu-wuwei", "Anhui"),
    "韶关高新区 (start area per memory; unverified)": ("shaoguan-hitech", "Guangdong"),
    "成都市双流区": ("tianfu-shuangliu", "Sichuan"), "成都市郫都区": ("tianfu-pidu", "Sichuan"),
    "简阳市": ("tianfu-jianyang", "Sichuan"),
    "两江新区水土新城 (per memory; unverified)": ("chongqing-shuitu", "Chongqing"),
    "西部(重庆)科学城璧山片区 (per memory; unverified)": ("chongqing-bishan", "Chongqing"),
    "重庆经济技术开发区 (per memory; unverified)": ("chongqing-jingkai", "Chongqing"),
    "和林格尔新区": ("horinger-xinqu", "Inner Mongolia"),
    "集宁大数据产业园": ("horinger-jining", "Inner Mongolia"),
    "贵安新区贵安电子信息产业园": ("guian-dianzi", "Guizhou"),
    "庆阳西峰数据信息产业聚集区": ("qingyang-xifeng", "Gansu"),
    "中卫工业园西部云基地": ("zhongwei-xibuyun", "Ningxia"),
}
# Residency / pairing region of each demand city: the hub whose area contains it, if any.
CITY_REGION = {
    "beijing": "jingjinji", "tianjin": "jingjinji",
    "shanghai": "changsanjiao", "hangzhou": "changsanjiao", "nanjing": "changsanjiao",
    "suzhou": "changsanjiao", "hefei": "changsanjiao", "ningbo": "changsanjiao",
    "guangzhou": "yuegangao", "shenzhen": "yuegangao", "dongguan": "yuegangao", "foshan": "yuegangao",
    "chengdu": "chengyu", "chongqing_city": "chengyu",
}
CITY_PROVINCE = {
    "beijing": "Beijing", "shanghai": "Shanghai", "guangzhou": "Guangdong", "shenzhen": "Guangdong",
    "hangzhou": "Zhejiang", "nanjing": "Jiangsu", "suzhou": "Jiangsu", "tianjin": "Tianjin",
    "chengdu": "Sichuan", "chongqing_city": "Chongqing", "wuhan": "Hubei", "xian": "Shaanxi",
    "zhengzhou": "Henan", "changsha": "Hunan", "hefei": "Anhui", "jinan": "Shandong",
    "qingdao": "Shandong", "xiamen": "Fujian", "fuzhou": "Fujian", "dongguan": "Guangdong",
    "foshan": "Guangdong", "ningbo": "Zhejiang", "shenyang": "Liaoning", "harbin": "Heilongjiang",
}
# Pairing (结对子, R1): each eastern demand hub is paired with a western hub (modelled: by
# distance and policy narrative — BTH↔Inner Mongolia, YRD↔Guizhou, GBA↔Guizhou is the usual
# press pairing; no official pairing list was found). Used for the pairing bonus and backups.
PAIRINGS = [
    ("beijing", "neimenggu"), ("tianjin", "neimenggu"), ("shanghai", "gansu"),
    ("hangzhou", "gansu"), ("nanjing", "ningxia"), ("suzhou", "ningxia"),
    ("guangzhou", "guizhou"), ("shenzhen", "guizhou"), ("chengdu", "gansu"),
    ("chongqing_city", "guizhou"),
]

def read_csv(path):
    with open(os.path.join(SHARED, path), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))

clusters = read_csv("dsxs_hubs_clusters.csv")
areas = read_csv("dsxs_cluster_start_areas.csv")
cities = read_csv("demand_cities.csv")
efs = {r["province_en"]: float(r["ef_2022_kgco2_per_kwh"]) for r in read_csv("grid_ef_province_mee_2021_2022.csv")}

cluster_by_en = {c["cluster_en"]: c for c in clusters}

# --- pools (modelled) ------------------------------------------------------------------------
# Scaling rule: the 10 clusters held >1.46 M standard racks in March 2024 (SCIO press
# conference). The reference network is a 1:10 model: 146,000 racks, 14,600 per cluster, split
# evenly over its start-area sites; each green region gets 7,300 (half a cluster). A standard
# rack is 2.5 kW IT (Qingyang plan). IT power per site splits by family 55 % general, 35 %
# intelligent (MIIT 2025 target share of intelligent compute), 10 % super; the super share of
# all of a cluster's (or region's) sites is pooled at its first site, as HPC centres are.
RACK_KW = 2.5
RACKS_PER_CLUSTER = 14_600
RACKS_PER_REGION = 7_300
CPU_SERVER_KW = 0.6        # dual-socket general server incl. memory/disk
HPC_NODE_KW = 1.0          # dual-socket HPC node with fast interconnect NIC
AI_HOST_KW = 2.0           # host part of an 8-accelerator server
ACC_TDP_KW = {"h800": 0.70, "a800": 0.40, "h20": 0.40, "l40s": 0.35, "ascend-910b": 0.40}
CPU_CORES = {"xeon-8480": 112, "epyc-9654": 192, "kunpeng-920": 128, "hygon-7390": 64}  # per 2-socket server
ACC_MEM = {"h800": 80, "a800": 80, "h20": 96, "l40s": 48, "ascend-910b": 64}
# Non-energy price (capex, staff, margin) per unit-hour in fen; energy is billed separately at
# the site's tariff. Modelled from the references in facts-metrics-prices §3 (vCPU-hour
# 0.27–0.36 RMB, A100/A800 8–12 RMB/GPU-h): per physical core 2 vCPU, minus ~0.05 RMB energy.
PRICE_FEN = {"core": 45, "h800": 1500, "a800": 900, "h20": 650, "l40s": 420, "ascend-910b": 800, "hpc-node": 2600}
WEST_DISCOUNT = 0.85  # modelled: "tier-1 regions slightly more expensive" (no quantified gap found)

EAST_ACC = [("h800", 0.4), ("a800", 0.35), ("l40s", 0.25)]
WEST_ACC = [("ascend-910b", 0.4), ("h20", 0.35), ("a800", 0.25)]
CHENGYU_ACC = [("ascend-910b", 0.4), ("a800", 0.35), ("l40s", 0.25)]

def pools_for(site_id, side, hub, racks, super_site, area_racks):
    kw = racks * RACK_KW
    pools = []
    cpu = {"east": "xeon-8480", "west": "kunpeng-920"}[side]
    if hub in ("chengyu", "guizhou"):
        cpu = "hygon-7390" if hub == "chengyu" else cpu
    # a second, ARM/x86 general pool so architecture variants matter
    gen_kw = kw * 0.55
    main_servers = int(gen_kw * 0.75 / CPU_SERVER_KW)
    alt_cpu = "epyc-9654" if cpu != "epyc-9654" and side == "east" else ("xeon-8480" if cpu == "kunpeng-920" else "kunpeng-920")
    alt_servers = int(gen_kw * 0.25 / CPU_SERVER_KW)
    disc = WEST_DISCOUNT if side == "west" else 1.0
    for model, servers, tag in ((cpu, main_servers, "cpu"), (alt_cpu, alt_servers, "cpu2")):
        pools.append(dict(id=f"{site_id}.{tag}", family="general", model=model, unit="core",
                          count=servers * CPU_CORES[model], memory_gib_per_unit=4 if model != "epyc-9654" else 3,
                          power_w_per_unit=round(CPU_SERVER_KW * 1000 / CPU_CORES[model], 2),
                          price_fen_per_unit_hour=round(PRICE_FEN["core"] * disc)))
    mix = EAST_ACC if side == "east" and hub != "chengyu" else (CHENGYU_ACC if hub == "chengyu" else WEST_ACC)
    ai_kw = kw * 0.35
    for model, share in mix:
        server_kw = 8 * ACC_TDP_KW[model] + AI_HOST_KW
        servers = int(ai_kw * share / server_kw)
        pools.append(dict(id=f"{site_id}.{model}", family="intelligent", model=model, unit="accelerator",
                          count=servers * 8, memory_gib_per_unit=ACC_MEM[model],
                          power_w_per_unit=round(server_kw * 1000 / 8, 2),
                          price_fen_per_unit_hour=round(PRICE_FEN[model] * disc)))
    if super_site:
        nodes = int(area_racks * RACK_KW * 0.10 / HPC_NODE_KW)
        hpc_cpu = "hygon-7390" if hub in ("chengyu",) else ("kunpeng-920" if side == "west" else "xeon-8480")
        pools.append(dict(id=f"{site_id}.hpc", family="super", model=hpc_cpu, unit="node",
                          count=nodes, memory_gib_per_unit=512, power_w_per_unit=HPC_NODE_KW * 1000,
                          price_fen_per_unit_hour=round(PRICE_FEN["hpc-node"] * disc)))
    return pools

# --- city data centres (modelled) ----------------------------------------------------------------
# The clusters hold only part of China's racks: >9 million standard racks nationally in early
# 2025 (中国电力报 2025-03-19), of which the 10 clusters held 1.46 M (2024). The rest — city and
# edge data centres outside the hubs — is modelled as one site per demand city, at the city's
# coordinates, in the same 1:10 model: (9,000,000 − 1,460,000 − the green regions' 146,000) / 10
# = 739,400 racks, split by tier: the four first-tier cities weigh 3, the others 1.
NATIONAL_RACKS = 9_000_000
CLUSTER_RACKS = 1_460_000
CITY_TIER1 = {"beijing", "shanghai", "guangzhou", "shenzhen"}
# Older and smaller than the hubs' new builds: PUE 1.45 — the national average was 1.42 in June
# 2025 (MIIT, SCIO 2025-09-09) with the hubs at 1.2–1.25, so the rest averages about 1.45.
CITY_PUE = 1.45
# IT power 70 % general, 30 % intelligent (older accelerators), no HPC; prices 10 % above the
# eastern hubs' (urban land and power; modelled, no quantified gap was found).
CITY_ACC = [("a800", 0.5), ("l40s", 0.5)]
CITY_PREMIUM = 1.10

def city_pools(site_id, racks):
    kw = racks * RACK_KW
    pools = []
    for model, share, tag in (("xeon-8480", 0.75, "cpu"), ("epyc-9654", 0.25, "cpu2")):
        servers = int(kw * 0.70 * share / CPU_SERVER_KW)
        pools.append(dict(id=f"{site_id}.{tag}", family="general", model=model, unit="core",
                          count=servers * CPU_CORES[model], memory_gib_per_unit=4 if model != "epyc-9654" else 3,
                          power_w_per_unit=round(CPU_SERVER_KW * 1000 / CPU_CORES[model], 2),
                          price_fen_per_unit_hour=round(PRICE_FEN["core"] * CITY_PREMIUM)))
    for model, share in CITY_ACC:
        server_kw = 8 * ACC_TDP_KW[model] + AI_HOST_KW
        servers = int(kw * 0.30 * share / server_kw)
        pools.append(dict(id=f"{site_id}.{model}", family="intelligent", model=model, unit="accelerator",
                          count=servers * 8, memory_gib_per_unit=ACC_MEM[model],
                          power_w_per_unit=round(server_kw * 1000 / 8, 2),
                          price_fen_per_unit_hour=round(PRICE_FEN[model] * CITY_PREMIUM)))
    return pools

# Provinces of city data centres without NBS generation data: a flat green share of
# 1 − grid factor / 0.85 (0.85 kg/kWh ≈ a coal unit; modelled: the non-fossil share implied by the
# province's 2022 grid factor, nuclear included — stated, since it overstates Fujian's green share).
COAL_EF = 0.85

# --- energy (modelled) -------------------------------------------------------------------------
gen = defaultdict(lambda: defaultdict(float))  # (province, month) -> source -> 10^4 kWh
for r in read_csv("power/nbs_province_generation_by_source_monthly_2019_2024.csv"):
    if r["month"].startswith("2023") and r["derived_month_value_10k_kwh"]:
        gen[(r["province"], r["derived_months_covered"])][r["source"]] += float(r["derived_month_value_10k_kwh"])
GENERATION_SOURCES = ("thermal", "hydro", "wind", "solar", "nuclear")  # not "consumption"
SEASON_MONTHS = {"winter": ["1-2", "12"], "spring": ["3", "4", "5"], "summer": ["6", "7", "8"], "autumn": ["9", "10", "11"]}

def season_mix(province):
    out = {}
    for season, months in SEASON_MONTHS.items():
        tot = defaultdict(float)
        for m in months:
            src = gen[(province, m)]
            if "wind" not in src and (province, "11") in gen:  # Dec wind unpublished: reuse Nov
                src = dict(src); src["wind"] = gen[(province, "11")].get("wind", 0.0)
            for k, v in src.items():
                if k in GENERATION_SOURCES:
                    tot[k] += max(v, 0.0)
        total = sum(tot.values())
        out[season] = {k: v / total for k, v in tot.items()} if total else {}
    return out

def solar_shape(lat, lon, doy):
    """Clear-sky cos(zenith) per Beijing-time hour (mid-hour), Spencer declination + EoT."""
    g = 2 * math.pi / 365 * (doy - 1)
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    eot = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
                    - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g))
    vals = []
    for h in range(24):
        local_min = (h + 0.5) * 60 + eot + 4 * (lon - 120.0)  # Beijing time is UTC+8 = 120°E
        ha = math.radians(local_min / 4 - 180)
        cz = math.sin(math.radians(lat)) * math.sin(decl) + math.cos(math.radians(lat)) * math.cos(decl) * math.cos(ha)
        vals.append(max(cz, 0.0))
    return vals

SEASON_DOY = {"spring": 79, "summer": 172, "autumn": 266, "winter": 355}

def green_profile(province, lat, lon):
    """Hourly share of renewables (hydro+wind+solar) in provincial generation, per season.

    Seasonal energy mix: NBS 2023 monthly generation by source (CREA china_co2 export).
    Hourly shape: hydro and wind flat over the day; solar follows clear-sky cos(zenith) at the
    site scaled so its daily mean equals its seasonal share; the rest is thermal/nuclear.
    Share_h = (hydro + wind + solar_h) / total, capped at 1. Nuclear is not counted as green.
    """
    mix = season_mix(province)
    prof = {}
    for season, m in mix.items():
        shape = solar_shape(lat, lon, SEASON_DOY[season])
        mean = sum(shape) / 24 or 1.0
        base = m.get("hydro", 0) + m.get("wind", 0)
        prof[season] = [min(1.0, base + m.get("solar", 0) * s / mean) for s in shape]
    return prof

# Flat C&I tariff per province (fen/MWh, modelled except Guangdong) and TOU schedules.
FLAT_FEN_PER_MWH = {  # modelled: typical general C&I 1–10 kV flat price, rounded; only GD sourced
    "Hebei": 60000, "Shanghai": 68000, "Jiangsu": 65000, "Zhejiang": 66000, "Anhui": 60000,
    "Guangdong": 68380, "Sichuan": 55000, "Chongqing": 58000, "Inner Mongolia": 35000,
    "Guizhou": 45000, "Gansu": 38000, "Ningxia": 36000, "Qinghai": 34000, "Yunnan": 40000,
    # city data centres' provinces (modelled, same rule)
    "Beijing": 70000, "Tianjin": 64000, "Hubei": 60000, "Shaanxi": 56000, "Henan": 60000, "Hunan": 62000,
    "Shandong": 62000, "Fujian": 60000, "Liaoning": 58000, "Heilongjiang": 56000,
}
# Ratios from the Guangdong schedule (the only sourced prices): valley 0.3338, flat 0.6838,
# peak 1.0538, critical 1.2538 RMB/kWh ⇒ 0.488, 1.0, 1.541, 1.834 of flat.
RATIO = {"valley": 0.488, "flat": 1.0, "peak": 1.541, "critical": 1.834}

# TOU schedules (hour ranges [start, end) in Beijing time, all months unless noted).
TOU = {
    # sourced periods (tou_tariffs_partial.csv); prices = flat × Guangdong ratios
    "Guangdong": [("critical", 14, 18), ("peak", 10, 14), ("peak", 18, 22), ("flat", 8, 10), ("flat", 22, 24),
                  ("valley", 0, 8)],
    "Shanghai": [("peak", 8, 11), ("peak", 18, 21), ("flat", 6, 8), ("flat", 11, 18), ("flat", 21, 22),
                 ("valley", 22, 24), ("valley", 0, 6)],
}
# modelled: eastern generic = Beijing-like evening peak; western solar-rich = midday valley
EAST_GENERIC = [("peak", 10, 15), ("peak", 18, 21), ("flat", 7, 10), ("flat", 15, 18), ("flat", 21, 23),
                ("valley", 23, 24), ("valley", 0, 7)]
WEST_SOLAR = [("valley", 10, 16), ("peak", 18, 23), ("flat", 7, 10), ("flat", 16, 18), ("flat", 23, 24),
              ("flat", 0, 7)]
HYDRO = [("peak", 9, 12), ("peak", 17, 21), ("flat", 7, 9), ("flat", 12, 17), ("flat", 21, 23),
         ("valley", 23, 24), ("valley", 0, 7)]

def tou_for(province, side):
    if province in TOU:
        return TOU[province], "periods: ../shared/data/tou_tariffs_partial.csv; prices: flat (modelled) x Guangdong ratios"
    if province in ("Sichuan", "Yunnan", "Guizhou", "Chongqing"):
        return HYDRO, "modelled: evening/morning peaks of a hydro-rich grid (no sourced schedule)"
    if side == "west":
        return WEST_SOLAR, "modelled: midday valley of solar-rich north-western grids (no sourced schedule)"
    return EAST_GENERIC, "modelled: Beijing-like schedule (../shared/data/tou_tariffs_partial.csv) applied by analogy"


def q(s):
    return '"' + str(s).replace('\\', '\\\\').replace('"', '\\"') + '"'

def fibre_ms(lat1, lon1, lat2, lon2):
    r = 6371.0088
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a)) * 1.5 / 204000 * 1000

def backup_of(site, rows):
    """Paired backup (灾备) site, modelled: the next site of the same cluster or region; for a
    single-site area, the nearest site elsewhere on the same side (east/west)."""
    area = site["cluster"] or site["region"]
    same = [r for r in rows if (r["cluster"] or r["region"]) == area]
    if len(same) > 1:
        i = same.index(site)
        return same[(i + 1) % len(same)]["id"]
    others = [r for r in rows if (r["cluster"] or r["region"]) != area and r["side"] == site["side"]]
    return min(others, key=lambda r: fibre_ms(site["lat"], site["lon"], r["lat"], r["lon"]))["id"]


def main():
    os.makedirs(f"{OUT}/network", exist_ok=True)
    os.makedirs(f"{OUT}/energy", exist_ok=True)
    hub_of = {c: h[0] for h in HUBS for c in h[4]}
    side_of_hub = {h[0]: h[3] for h in HUBS}
    cl_ids = {c["cluster_id"] for c in clusters}
    # hubs
    with open(f"{OUT}/network/hubs.toml", "w") as f:
        f.write("# The 8 national hub nodes (国家枢纽节点). Names: ../shared/data/dsxs_hubs_clusters.csv (NDRC replies).\n")
        f.write("# side: east = demand-side hub (Chengdu-Chongqing counts as demand-side per NDRC), west = supply-side.\n")
        f.write("# Coordinates are not stored: a hub's position is the mean of its clusters'.\n\n")
        for hid, cn, en, side, cls in HUBS:
            f.write(f"[[hub]]\nid = {q(hid)}\nname_cn = {q(cn)}\nname_en = {q(en)}\nside = {q(side)}\n"
                    f"source = \"dsxs_hubs_clusters.csv (NDRC approval replies)\"\n\n")
    with open(f"{OUT}/network/clusters.toml", "w") as f:
        f.write("# The 10 national data-centre clusters. Coordinates: mean of the start-area points\n"
                "# (../shared/data/dsxs_cluster_start_areas.csv, pyecharts city_coordinates.json).\n\n")
        for c in clusters:
            f.write(f"[[cluster]]\nid = {q(c['cluster_id'])}\nhub = {q(hub_of[c['cluster_id']])}\n"
                    f"name_cn = {q(c['cluster_cn'])}\nname_en = {q(c['cluster_en'])}\nprovince_cn = {q(c['province_cn'])}\n"
                    f"lat = {c['lat']}\nlon = {c['lon']}\nsource = {q(c['coord_method'])}\n\n")
    with open(f"{OUT}/network/regions.toml", "w") as f:
        f.write("# Non-hub green regions: schedulable like hubs, outside the 8 hubs (R1).\n"
                "# Chosen for the lowest 2022 provincial grid factors in ../shared/data/grid_ef_province_mee_2021_2022.csv.\n"
                "# Coordinates: mean of the region's sites (approximate city coordinates, ±0.1°).\n\n")
        for rid, cn, en, prov, sites in REGIONS:
            lat = round(sum(s[2] for s in sites) / len(sites), 3)
            lon = round(sum(s[3] for s in sites) / len(sites), 3)
            f.write(f"[[region]]\nid = {q(rid)}\nname_cn = {q(cn)}\nname_en = {q(en)}\nprovince = {q(prov)}\n"
                    f"lat = {lat}\nlon = {lon}\nsource = \"modelled: mean of the region's site coordinates\"\n\n")
    with open(f"{OUT}/network/cities.toml", "w") as f:
        f.write("# Demand cities (origins of work). Coordinates: ../shared/data/demand_cities.csv (pyecharts).\n"
                "# Id scheme: the shared city id, except where it collides with a cluster id: then `<id>_city`\n"
                "# (chongqing -> chongqing_city). `region` is the hub whose area contains the city, if any.\n\n")
        for c in cities:
            cid = c["city_id"] + ("_city" if c["city_id"] in cl_ids else "")
            reg = CITY_REGION.get(cid)
            f.write(f"[[city]]\nid = {q(cid)}\nname_cn = {q(c['city_cn'])}\nprovince = {q(CITY_PROVINCE[cid])}\n"
                    + (f"region = {q(reg)}\n" if reg else "")
                    + f"lat = {c['lat']}\nlon = {c['lon']}\nsource = \"demand_cities.csv (pyecharts {c['coord_key_in_pyecharts']})\"\n\n")
    with open(f"{OUT}/network/pairings.toml", "w") as f:
        f.write("# Pairing (结对子): an eastern demand city paired with a western hub. MODELLED: no official\n"
                "# pairing list was found; pairs follow distance and the usual press pairings.\n\n")
        for city, hub in PAIRINGS:
            f.write(f"[[pairing]]\ncity = {q(city)}\nhub = {q(hub)}\n\n")

    # sites
    site_rows = []
    by_cluster = defaultdict(list)
    for a in areas:
        by_cluster[cluster_by_en[a["cluster_en"]]["cluster_id"]].append(a)
    for cid, alist in by_cluster.items():
        hub = hub_of[cid]
        for i, a in enumerate(alist):
            sid, prov = SITE_NAMES[a["start_area_cn"]]
            src = a["start_area_source"].replace("\n", " ")
            site_rows.append(dict(id=sid, cluster=cid, region=None, hub=hub, side=side_of_hub[hub], province=prov,
                                  name_cn=a["start_area_cn"], lat=float(a["lat"]), lon=float(a["lon"]),
                                  racks=RACKS_PER_CLUSTER // len(alist), super_site=(i == 0),
                                  pue=1.25 if side_of_hub[hub] == "east" else 1.2,
                                  coord_source=f"start area point: {src}" + (" (proxy point)" if a["coord_is_proxy"] == "True" else "")))
    for rid, cn, en, prov, sites in REGIONS:
        for i, (sid, name, lat, lon) in enumerate(sites):
            site_rows.append(dict(id=sid, cluster=None, region=rid, hub=None, side="west", province=prov, name_cn=name,
                                  lat=lat, lon=lon, racks=RACKS_PER_REGION // len(sites), super_site=(i == 0),
                                  pue=1.2 if prov == "Qinghai" else 1.25,
                                  coord_source="approximate city coordinates (modelled, ±0.1°)"))
    city_rows = []
    weights = {}
    for c in cities:
        cid = c["city_id"] + ("_city" if c["city_id"] in cl_ids else "")
        weights[cid] = 3 if cid in CITY_TIER1 else 1
    city_racks_total = (NATIONAL_RACKS - CLUSTER_RACKS - 2 * RACKS_PER_REGION * 10) // 10
    for c in cities:
        cid = c["city_id"] + ("_city" if c["city_id"] in cl_ids else "")
        racks = city_racks_total * weights[cid] // sum(weights.values())
        city_rows.append(dict(id=f"{cid.replace('_city', '')}-dc", city=cid, province=CITY_PROVINCE[cid],
                              name_cn=f"{c['city_cn']}城市数据中心", lat=float(c["lat"]), lon=float(c["lon"]),
                              racks=racks, side="east"))
    with open(f"{OUT}/network/sites.toml", "w") as f:
        f.write("# Sites (data centres): one per cluster start area, two per green region.\n"
                "# MODELLED capacities — see data/README.md \"Scaling rule\": 1:10 model of the 1.46 M racks of\n"
                "# the 10 clusters (2024), 2.5 kW per standard rack, IT power split 55 % general / 35 %\n"
                "# intelligent / 10 % super (super pooled at the first site of each cluster or region).\n"
                "# PUE: start-area targets (east 1.25, west 1.2: policy_pue_green_latency_targets.csv);\n"
                "# Yunnan 1.25 by analogy with humid southern sites. Prices are non-energy fen per unit-hour;\n"
                "# `backup` is the paired disaster-recovery site (modelled: the next site of the same\n"
                "# cluster or region, else the nearest site on the same side).\n"
                "# energy is billed at the site's tariff.\n\n")
        for s in site_rows:
            f.write(f"[[site]]\nid = {q(s['id'])}\nname_cn = {q(s['name_cn'])}\n")
            f.write(f"cluster = {q(s['cluster'])}\n" if s["cluster"] else f"region = {q(s['region'])}\n")
            f.write(f"backup = {q(backup_of(s, site_rows))}\n")
            f.write(f"province = {q(s['province'])}\nlat = {s['lat']}\nlon = {s['lon']}\n"
                    f"coord_source = {q(s['coord_source'])}\nracks = {s['racks']}\npue = {s['pue']}\n"
                    f"tariff = {q(s['province'].lower().replace(' ', '_'))}\n"
                    f"green_profile = {q(s['province'].lower().replace(' ', '_'))}\n\n")
            area_racks = RACKS_PER_CLUSTER if s["cluster"] else RACKS_PER_REGION
            for p in pools_for(s["id"], s["side"], s["hub"] or s["region"], s["racks"], s["super_site"], area_racks):
                f.write("[[site.pool]]\n" + "".join(f"{k} = {q(v) if isinstance(v, str) else v}\n" for k, v in p.items()) + "\n")
        f.write("# City data centres outside the hubs: one per demand city (data/README.md \"City data centres\").\n"
                f"# MODELLED: ({NATIONAL_RACKS:,} national racks − {CLUSTER_RACKS:,} in the clusters − the green regions') / 10\n"
                f"# = {city_racks_total:,} racks, first-tier cities weigh 3, others 1; PUE {CITY_PUE}; IT 70 % general, 30 %\n"
                f"# intelligent; prices × {CITY_PREMIUM}. `backup`: the nearest cluster site.\n\n")
        for s in city_rows:
            near = min((r for r in site_rows if r["cluster"]), key=lambda r: fibre_ms(s["lat"], s["lon"], r["lat"], r["lon"]))
            f.write(f"[[site]]\nid = {q(s['id'])}\nname_cn = {q(s['name_cn'])}\ncity = {q(s['city'])}\n"
                    f"backup = {q(near['id'])}\nprovince = {q(s['province'])}\nlat = {s['lat']}\nlon = {s['lon']}\n"
                    f"coord_source = \"the demand city's coordinates (demand_cities.csv)\"\nracks = {s['racks']}\npue = {CITY_PUE}\n"
                    f"tariff = {q(s['province'].lower().replace(' ', '_'))}\n"
                    f"green_profile = {q(s['province'].lower().replace(' ', '_'))}\n\n")
            for p in city_pools(s["id"], s["racks"]):
                f.write("[[site.pool]]\n" + "".join(f"{k} = {q(v) if isinstance(v, str) else v}\n" for k, v in p.items()) + "\n")

    # links: backbone mesh among clusters/regions; access links city -> cluster/region
    nodes = [(c["cluster_id"], float(c["lat"]), float(c["lon"]), side_of_hub[hub_of[c["cluster_id"]]], hub_of[c["cluster_id"]]) for c in clusters]
    for rid, cn, en, prov, sites in REGIONS:
        nodes.append((rid, sum(s[2] for s in sites) / len(sites), sum(s[3] for s in sites) / len(sites), "west", rid))
    with open(f"{OUT}/network/links.toml", "w") as f:
        f.write("# Links. Latency is not stored unless measured: the code derives one-way latency from the\n"
                "# endpoints' coordinates with the fibre model below (great-circle km x route factor / fibre\n"
                "# speed). Set `one_way_ms` on a link to override it with a measured value.\n"
                "# Bandwidth and price are MODELLED (no published Chinese per-GB or per-Mbps list prices were\n"
                "# found; AWS inter-region transfer is $0.02/GB ≈ 14 fen/GB, facts-metrics-prices §3.4):\n"
                "#   backbone (cluster/region <-> cluster/region): 400 Gbps, 6 fen/GB within a hub, 8 fen/GB across;\n"
                "#   access (demand city -> cluster/region): 100 Gbps, 4 fen/GB.\n"
                "# Sites reach their own cluster at 1,600 Gbps and 0 fen/GB (campus fabric).\n\n"
                "[model]\nroute_factor = 1.5\nfibre_km_per_s = 204000.0\n"
                "source = \"MIIT 2023 ceiling: inter-cluster direct links <= 1.5x theoretical latency; v = c/1.47\"\n"
                "intra_cluster_gbps = 1600.0\nintra_cluster_fen_per_gb = 0\n\n")
        for i in range(len(nodes)):
            for j in range(i + 1, len(nodes)):
                a, b = nodes[i], nodes[j]
                same = a[4] == b[4]
                f.write(f"[[link]]\na = {q(a[0])}\nb = {q(b[0])}\nkind = \"backbone\"\nbandwidth_gbps = 400.0\n"
                        f"price_fen_per_gb = {6 if same else 8}\n\n")
        for c in cities:
            cid = c["city_id"] + ("_city" if c["city_id"] in cl_ids else "")
            for n in nodes:
                f.write(f"[[link]]\na = {q(cid)}\nb = {q(n[0])}\nkind = \"access\"\nbandwidth_gbps = 100.0\nprice_fen_per_gb = 4\n\n")
        # city <-> city (reaching another city's data centre): access links too
        cids = [c["city_id"] + ("_city" if c["city_id"] in cl_ids else "") for c in cities]
        for i in range(len(cids)):
            for j in range(i + 1, len(cids)):
                f.write(f"[[link]]\na = {q(cids[i])}\nb = {q(cids[j])}\nkind = \"access\"\nbandwidth_gbps = 100.0\nprice_fen_per_gb = 4\n\n")

    # energy
    with open(f"{OUT}/energy/grid_factors.toml", "w") as f:
        f.write("# 2022 provincial average grid CO2 emission factors, kg CO2 per kWh (location-based).\n"
                "# Source: MEE/NBS \"2022年电力二氧化碳排放因子\" (2024-12-20), as transcribed in\n"
                "# ../shared/data/grid_ef_province_mee_2021_2022.csv (not cross-checked against the PDF).\n\n[factors]\n")
        for prov, ef in sorted(efs.items()):
            f.write(f"{q(prov)} = {ef}\n")
    provs = sorted({s["province"] for s in site_rows + city_rows})
    side_of_prov = {s["province"]: s["side"] for s in city_rows + site_rows}
    with open(f"{OUT}/energy/tariffs.toml", "w") as f:
        f.write("# Time-of-use electricity tariffs per site province, fen per MWh, hours [start, end) Beijing time.\n"
                "# Flat prices are MODELLED (typical C&I flat price; only Guangdong's 0.6838 RMB/kWh is sourced).\n"
                "# Period prices = flat x ratio, ratios from Guangdong's sourced schedule: valley 0.488, flat 1.0,\n"
                "# peak 1.541, critical 1.834 (tou_tariffs_partial.csv). Schedules: see `schedule_source`.\n\n")
        for prov in provs:
            sched, src = tou_for(prov, side_of_prov[prov])
            flat = FLAT_FEN_PER_MWH[prov]
            f.write(f"[[tariff]]\nid = {q(prov.lower().replace(' ', '_'))}\nprovince = {q(prov)}\nflat_fen_per_mwh = {flat}\n"
                    f"schedule_source = {q(src)}\n")
            hours = [None] * 24
            for kind, a, b in sched:
                for h in range(a, b):
                    hours[h] = kind
            assert all(hours), prov
            f.write("hours = [" + ", ".join(f"{round(flat * RATIO[k])}" for k in hours) + "]\n\n")
    with open(f"{OUT}/energy/green_share.csv", "w") as f:
        f.write("profile,season,hour,green_share\n")
        for prov in provs:
            s0 = next(s for s in site_rows + city_rows if s["province"] == prov)
            if any(k[0] == prov for k in gen):
                prof = green_profile(prov, s0["lat"], s0["lon"])
            else:
                flat = round(max(0.0, 1.0 - efs[prov] / COAL_EF), 4)
                prof = {season: [flat] * 24 for season in ("spring", "summer", "autumn", "winter")}
            for season in ("spring", "summer", "autumn", "winter"):
                for h, v in enumerate(prof[season]):
                    f.write(f"{prov.lower().replace(' ', '_')},{season},{h},{v:.4f}\n")

if __name__ == "__main__":
    main()
