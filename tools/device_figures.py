#!/usr/bin/env python3
"""Every figure of one tests/gpu/run_on_device.sh call in one JSON file.

    python3 tools/device_figures.py OUT_DIR        # writes OUT_DIR/figures.json

run_on_device.sh calls this at its end. It reads OUT_DIR/device.log (each section starts with a line
"== NAME: COMMAND"; the call ends with "== summary (N s)" and one "NAME: STATUS" line per section) and
the PyTorch results the call wrote (OUT_DIR/torch-best*/torch_best.json from torch_best.py,
OUT_DIR/torch_reference*.json from tools/torch_reference_bench.py), and writes:

  gpu         the card line the call printed (nvidia-smi's name, driver, memory, clocks)
  sections    per section: command, status ("rc 0, 31 s", "not selected", "dry run", ...), and the
              figures its output holds: bench_train's ms_mean, ms_min, img_s, tflops, limit_pct,
              target_ms, target_pct, peak_gib; bench_sample's s_per_batch, ms_per_eval, img_s, peak_gib;
              a doctest suite's test cases and assertions (passed, failed, skipped)
  pytorch     torch_best.py's rows (img_s, ms or s, peak_gib, warmup_s, or the error), by part
  targets     the side-by-side targets of docs/perf.md ("One device call beside PyTorch's best"): each
              with stf's figure, PyTorch's fastest row where it compares, the ratio and whether it is met;
              null where this call did not measure it

Only the standard library; nothing here needs a GPU, so a DRY_RUN=1 call checks it on any machine.
"""
import json
import os
import re
import sys

# Figures in the benchmarks' output lines (apps/bench_train.cpp, apps/bench_sample.cpp, doctest).
PATTERNS = [
    (re.compile(r'^ms/step: mean ([\d.]+)\s+min ([\d.]+)'), ('ms_mean', 'ms_min')),
    (re.compile(r'^img/s: ([\d.]+)'), ('img_s',)),
    (re.compile(r'^achieved: ([\d.eE+-]+) TFLOP/s = ([\d.]+)% of the limit'), ('tflops', 'limit_pct')),
    (re.compile(r'target alone: ([\d.]+) ms = ([\d.]+)% of the step'), ('target_ms', 'target_pct')),
    (re.compile(r'^peak memory: ([\d.]+) GiB'), ('peak_gib',)),
    (re.compile(r'^s/batch: ([\d.]+); ms per network evaluation: ([\d.]+)'), ('s_per_batch', 'ms_per_eval')),
]
DOCTEST = re.compile(r'^\[doctest\] (test cases|assertions):\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed'
                     r'(?: \|\s*(\d+) skipped)?')
HEADER = re.compile(r'^== (\S+?)(?:: (.*))?$')
STATUS = re.compile(r'^(\S+): (.*)$')


def parse_log(text):
    gpu, sections, statuses, current, in_summary = None, {}, {}, None, False
    for line in text.splitlines():
        if line.startswith('gpu: ') and current is None:
            gpu = line[5:].strip()
            continue
        if line.startswith('== summary'):
            in_summary, current = True, None
            continue
        m = HEADER.match(line)
        if m and not in_summary:
            current = sections.setdefault(m.group(1), {'command': m.group(2) or '', 'figures': {}})
            continue
        if in_summary:
            s = STATUS.match(line)
            if s:
                statuses[s.group(1)] = s.group(2)
            continue
        if current is None:
            continue
        for pattern, names in PATTERNS:
            f = pattern.search(line.strip())
            if f:
                current['figures'].update({n: float(v) for n, v in zip(names, f.groups())})
        d = DOCTEST.match(line.strip())
        if d:
            key = 'test_cases' if d.group(1) == 'test cases' else 'assertions'
            current['figures'][key] = {'total': int(d.group(2)), 'passed': int(d.group(3)),
                                       'failed': int(d.group(4)),
                                       'skipped': int(d.group(5)) if d.group(5) else 0}
    for name, status in statuses.items():
        sections.setdefault(name, {'command': '', 'figures': {}})['status'] = status
    return gpu, sections


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {'error': f'{path}: {e}'}


def pytorch_results(out):
    parts = {}
    for entry in sorted(os.listdir(out)):
        path = os.path.join(out, entry)
        if entry.startswith('torch-best') and os.path.isfile(os.path.join(path, 'torch_best.json')):
            parts[entry] = load_json(os.path.join(path, 'torch_best.json'))
        elif entry.startswith('torch_reference') and entry.endswith('.json'):
            parts[entry[:-5]] = load_json(path)
    return parts


def fastest(parts, prefix):
    """PyTorch's fastest torch_best.py row whose name starts with prefix: (name, img/s). Only torch_best.py's
    rows count: all of them time the same STF step (or sampler) as stf's benchmarks here."""
    best = (None, None)
    for part_name, part in parts.items():
        rows = part.get('rows') if part_name.startswith('torch-best') else None
        for name, row in (rows.items() if isinstance(rows, dict) else []):
            if name.startswith(prefix) and isinstance(row, dict) and isinstance(row.get('img_s'), (int, float)):
                if best[1] is None or row['img_s'] > best[1]:
                    best = (name, row['img_s'])
    return best


def figure(sections, name, key):
    return sections.get(name, {}).get('figures', {}).get(key)


def targets(sections, parts):
    """The issue's table: stf's figure, the bar, PyTorch's fastest comparable row and the ratio."""
    train_row, train_img_s = fastest(parts, 'train_')
    heun_row, heun_img_s = fastest(parts, 'heun_')
    rows = []

    def add(work, section, key, at_least=None, at_most=None, torch=None, ratio_at_least=None):
        value = figure(sections, section, key)
        entry = {'work': work, 'section': section, 'figure': key, 'value': value}
        met = None if value is None else True
        if at_least is not None:
            entry['at_least'] = at_least
            met = met and value >= at_least
        if at_most is not None:
            entry['at_most'] = at_most
            met = met and value <= at_most
        if torch is not None:
            entry['pytorch_row'], entry['pytorch_img_s'] = torch
            ratio = value / torch[1] if value is not None and torch[1] else None
            entry['ratio'], entry['ratio_at_least'] = ratio, ratio_at_least
            met = None if ratio is None or met is None else met and ratio >= ratio_at_least
        entry['met'] = met
        rows.append(entry)

    add('bf16 step, DDPM++ batch 64, STF n 1024', 'train-bf16-stf', 'img_s', at_least=2000,
        torch=(train_row, train_img_s), ratio_at_least=1.5)
    add('TF32 step', 'train-tf32-stf', 'img_s', at_least=1300)
    add('fp32 step (TF32 off)', 'train-fp32-stf', 'img_s', at_least=650)
    # The same three as CUDA graphs (bench_train --cuda-graph on).
    add('bf16 step, CUDA graphs', 'train-bf16-stf-graph', 'img_s', at_least=2000,
        torch=(train_row, train_img_s), ratio_at_least=1.5)
    add('TF32 step, CUDA graphs', 'train-tf32-stf-graph', 'img_s', at_least=1300)
    add('fp32 step (TF32 off), CUDA graphs', 'train-fp32-stf-graph', 'img_s', at_least=650)
    add('Heun-18 batch 256, bf16', 'sample-heun18-bf16', 'img_s', at_least=300, torch=(heun_row, heun_img_s),
        ratio_at_least=1.5)
    add('Heun-18 batch 256, fp32', 'sample-heun18', 'img_s', at_least=75, torch=(heun_row, heun_img_s),
        ratio_at_least=1.5)
    add('Heun-18 batch 256, bf16, CUDA graphs', 'sample-heun18-bf16-graph', 'img_s', at_least=300,
        torch=(heun_row, heun_img_s), ratio_at_least=1.5)
    add('Heun-18 batch 256, fp32, CUDA graphs', 'sample-heun18-graph', 'img_s', at_least=75,
        torch=(heun_row, heun_img_s), ratio_at_least=1.5)
    add('peak memory, fp32 STF step (GiB)', 'train-fp32-stf', 'peak_gib', at_most=6)
    # The STF target over the whole dataset against the bf16 step: bench_train --rbatch all reports the
    # target alone in ms; its share of the bf16 step is that over the bf16 step's ms.
    target_ms, bf16_ms = figure(sections, 'train-fp32-stf-all', 'target_ms'), figure(sections, 'train-bf16-stf', 'ms_mean')
    share = 100 * target_ms / bf16_ms if target_ms is not None and bf16_ms else None
    rows.append({'work': 'STF target, whole dataset (n 50,000), share of the bf16 step (%)',
                 'section': 'train-fp32-stf-all / train-bf16-stf', 'value': share, 'at_most': 2,
                 'met': None if share is None else share <= 2})
    return rows


def main(argv):
    if len(argv) != 2:
        sys.exit('usage: device_figures.py OUT_DIR (the directory run_on_device.sh wrote device.log into)')
    out = argv[1]
    log_path = os.path.join(out, 'device.log')
    try:
        with open(log_path, errors='replace') as f:
            text = f.read()
    except OSError as e:
        sys.exit(f'device_figures.py: cannot read {log_path}: {e}')
    gpu, sections = parse_log(text)
    parts = pytorch_results(out)
    result = {'gpu': gpu, 'sections': sections, 'pytorch': parts, 'targets': targets(sections, parts)}
    with open(os.path.join(out, 'figures.json'), 'w') as f:
        json.dump(result, f, indent=1)
    for t in result['targets']:
        value = 'not measured' if t['value'] is None else f"{t['value']:.4g}"
        ratio = f", {t['ratio']:.2f}x {t['pytorch_row']}" if t.get('ratio') is not None else ''
        met = {True: 'met', False: 'MISSED', None: '-'}[t['met']]
        print(f"target {t['work']}: {value}{ratio} ({met})")


if __name__ == '__main__':
    main(sys.argv)
