#!/usr/bin/env python3
"""Ratios of one sitting: Drover's medians over BullMQ's and chasquimq's, per row."""
import json, re, sys

def drover(path):
    rows = {}
    for line in open(path):
        if line.startswith('{'):
            r = json.loads(line)
            rows[(r['bench'], r['config'])] = r
    return rows

def peers(path):
    rows = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) != 7 or cells[1] not in ('enqueue', 'process', 'latency'):
            continue
        try:
            median = float(cells[3])
        except ValueError:
            continue
        peer = 'chasquimq' if 'chasquimq' in cells[0] else 'bullmq'
        rows[(peer, cells[1], cells[2])] = (median, cells[6])
    return rows

def p99(notes):
    vals = [float(x) for x in re.findall(r'p99 ([0-9.]+)', notes)]
    vals.sort()
    return vals[len(vals) // 2] if vals else None

MAP = [
    ('enqueue bulk', ('enqueue', 'bulk, batches of 1000'), 'addBulk batch=1000', 'addBulk batch=1000'),
    ('enqueue single', ('enqueue', 'single, 100 in flight'), 'add, 100 in flight', 'add, 100 in flight'),
    ('process c1', ('process', '1 proc x c1 (completed jobs kept)'), '1proc x c1, keep completed', '1proc x c1, removeOnComplete'),
    ('process c10', ('process', '1 proc x c10 (completed jobs kept)'), '1proc x c10, keep completed', '1proc x c10, removeOnComplete'),
    ('process c50', ('process', '1 proc x c50 (completed jobs kept)'), '1proc x c50, keep completed', '1proc x c50, removeOnComplete'),
    ('process 2xc50', ('process', '2 proc x c50 (completed jobs kept)'), '2proc x c50, keep completed', '2proc x c50, removeOnComplete'),
]

d, p = drover(sys.argv[1]), peers(sys.argv[2])
print('| row | Drover | BullMQ | chasquimq | ÷ BullMQ | ÷ chasquimq |')
print('|---|---:|---:|---:|---:|---:|')
for name, dk, bk, ck in MAP:
    dv = d[dk]['median']
    b = p.get(('bullmq', dk[0], bk))
    c = p.get(('chasquimq', dk[0], ck))
    bs = f'{b[0]:,.0f}' if b else '—'
    cs = f'{c[0]:,.0f}' if c else '—'
    rb = f'{dv / b[0]:.2f}' if b else ''
    rc = f'{dv / c[0]:.2f}' if c else ''
    print(f'| {name} | {dv:,.0f} | {bs} | {cs} | {rb} | {rc} |')
lat = next(v for k, v in d.items() if k[0] == 'latency')
lk = 'enqueue->handler start, 2000/s for 10s, 1proc x c50'
b, c = p.get(('bullmq', 'latency', lk)), p.get(('chasquimq', 'latency', lk))
def pl(x):
    return f'{x[0]:.2f} / {p99(x[1]):.2f}' if x else '—'
print(f"| latency p50 / p99 ms | {lat['median']:.2f} / {p99(lat['notes']):.2f} | {pl(b)} | {pl(c)} | | |")
mem = [(k[1], v['median']) for k, v in d.items() if k[0] == 'memory']
for cfg, v in mem[:2]:
    print(f'| memory {cfg} | {v:.0f} B | | | | |')
