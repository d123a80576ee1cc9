import redis, random
import os
PROTO = int(os.environ.get("PROTO", "2"))
a = redis.Redis(port=int(os.environ.get("REDIS_PORT", "6390")), protocol=PROTO)
b = redis.Redis(port=int(os.environ.get("SHARDLINE_PORT", "6391")), protocol=PROTO)
random.seed(3)
def val():
    r = random.random()
    if r < 0.2: return str(random.randint(-10**20, 10**20))
    if r < 0.4: return repr(random.uniform(-1e6, 1e6))
    if r < 0.5: return f"{random.uniform(0, 10):.{random.randint(0, 25)}f}"
    if r < 0.6: return f"{random.uniform(-1,1)}e{random.randint(-4960, 4940)}"
    if r < 0.7: return random.choice(["0.1", "0.2", "0.3", "1e-20", "-0", "0x10", "0x1.8p3", "1e4932", "1.18e4932", "-1.18e4932", "3.6e-4951", "1e-4951", "inf", "-inf", "nan", " 1", "1 ", "", "1e", ".5", "5.", "+.5e1", "0.", "00012.50"])
    if r < 0.85: return str(random.randint(-100, 100)) + "." + str(random.randint(0, 10**random.randint(1, 30)))
    return str(random.choice([9223372036854775807, -9223372036854775808, 18446744073709551616, 2**70, 2**63+1])) 
diffs = 0
N = 20000
for i in range(N):
    x, y = val(), val()
    res = []
    for r in (a, b):
        try:
            r.set("f", x)
            out = r.execute_command("INCRBYFLOAT", "f", y)
        except Exception as e:
            out = "ERR " + str(e)
        try:
            r.delete("h"); r.hset("h", "k", x)
            out2 = r.execute_command("HINCRBYFLOAT", "h", "k", y)
        except Exception as e:
            out2 = "ERR " + str(e)
        res.append((out, out2))
    if res[0] != res[1]:
        diffs += 1
        if diffs <= 10: print("DIFF", repr(x), repr(y), res[0], res[1])
print("compared", N, "diffs", diffs)
