import redis, random
import os
PROTO = int(os.environ.get("PROTO", "2"))
a = redis.Redis(port=int(os.environ.get("REDIS_PORT", "6390")), protocol=PROTO)
b = redis.Redis(port=int(os.environ.get("SHARDLINE_PORT", "6391")), protocol=PROTO)
random.seed(11)
diffs = 0; total = 0
def both(*args):
    global diffs, total
    total += 1
    try: x = a.execute_command(*args)
    except Exception as e: x = "ERR " + str(e)
    try: y = b.execute_command(*args)
    except Exception as e: y = "ERR " + str(e)
    if x != y:
        diffs += 1
        if diffs < 8: print("DIFF", args, "\n  redis", str(x)[:300], "\n  shard", str(y)[:300])
for r in (a, b): r.flushall()
for n in (50, 400):
    for r in (a, b): r.delete("pts")
    for i in range(n):
        lon = random.uniform(-180, 180); lat = random.uniform(-85.05, 85.05)
        if random.random() < 0.5:
            lon = random.uniform(-5, 5); lat = random.uniform(40, 50)
        both("GEOADD", "pts", lon, lat, f"m{i}")
    for t in range(400):
        lon = random.choice([random.uniform(-180, 180), random.uniform(-5, 5), 179.9, -179.9, 0])
        lat = random.choice([random.uniform(-85, 85), random.uniform(40, 50), 84.9, -84.9, 0])
        unit = random.choice(["m", "km", "mi", "ft"])
        opts = []
        if random.random() < 0.5: opts.append(random.choice(["ASC", "DESC"]))
        if random.random() < 0.3: opts += ["COUNT", random.randint(1, 20)]
        if random.random() < 0.2 and "COUNT" in opts: opts.append("ANY")
        opts += random.sample(["WITHDIST", "WITHCOORD", "WITHHASH"], random.randint(0, 3))
        rad = random.choice([1, 10, 100, 1000, 5000, 20000, 0.5]) * (1000 if unit == "m" else 1)
        if random.random() < 0.5:
            both("GEOSEARCH", "pts", "FROMLONLAT", lon, lat, "BYRADIUS", rad, unit, *opts)
        else:
            both("GEOSEARCH", "pts", "FROMLONLAT", lon, lat, "BYBOX", rad, rad * random.uniform(0.2, 3), unit, *opts)
        m = f"m{random.randrange(n)}"
        both("GEORADIUSBYMEMBER", "pts", m, rad, unit, *opts)
        both("GEODIST", "pts", m, f"m{random.randrange(n)}", unit)
        both("GEOHASH", "pts", m)
        both("GEOPOS", "pts", m)
print("total", total, "diffs", diffs)
