#!/usr/bin/env python3
"""Times the PyTorch reference implementation of EDM + STF on the work stf's benchmarks time.

docs/perf.md compares stf with the published PyTorch code on the same card. This script produces the
PyTorch side of that comparison, one row per configuration:

  flops_ddpmpp                    DDPM++ parameters and forward GFLOP per 32x32 image, counted as nn::forward_flops
                                  counts (and by PyTorch's FLOP counter where it has one)
  train_{ddpmpp,ncsnpp}_fp32_{dsm,stf}
                                  one training step, fp32 with TF32 off, batch --batch; STF with a reference
                                  batch of --rbatch images; EDM's augmentation (p 0.12), dropout 0.13, Adam
  train_ddpmpp_tf32_{dsm,stf}     the same with TF32 allowed in matmuls and convolutions
  train_ddpmpp_fp32_dsm_b128      batch 128
  train_ddpmpp_fp32_dsm_b512      batch 512 on one GPU (EDM's whole step; peak memory about 60 GiB)
  train_ddpmpp_fp16edm_stf        EDM's own fp16 mode (EDMPrecond use_fp16), TF32 off; ..._tf32_stf with TF32
  stf_target_b64_n1024            the STF target alone, d 3072: the reference code's stf_targets against the
  stf_target_b256_n2048           GEMM form (one GEMM, a row softmax, a second GEMM), with their agreement
  heun18_fp32                     EDM's Heun sampler, 18 steps (35 network evaluations), batch 256, sampler in
                                  float64 and network in float32
  cpu_small_dsm                   the CPU row: DDPM++-small (model_channels 32, channel_mult [1,2,2], 2 blocks,
                                  attention at 16), 32x32x1, batch 32, DSM, no augmentation, --threads threads,
                                  always on the CPU
  cpu_small_stf                   the same with STF over a reference batch of 256 and EDM's augmentation (p 0.12,
                                  9 augmentation labels), as bench_train --rbatch 256 --augment 0.12
  cpu_small_heun18                the CPU row's network sampling with EDM's Heun sampler, 18 steps, batch 16 (as
                                  bench_sample --device cpu with the CPU row's network flags), on the CPU
  train_bf16_stf, train_cl_bf16_stf, heun18_bf16, train_compile_cl_bf16_stf, train_compile_cl_bf16_graphs_stf,
  train_compile_fp32_dsm          what a PyTorch user would run today: bf16 autocast (TF32 on), channels_last
                                  memory format, torch.compile (mode "default"; "reduce-overhead" adds CUDA graphs).
                                  Autocast wraps the U-Net inside EDMPrecond (which asserts a float32 result),
                                  so the preconditioning, the loss and the STF target stay float32

Every training row runs --warmup steps (compilation happens there), then --steps steps timed as one loop with
one synchronisation, and reports the mean ms per step, img/s and, on a GPU, the peak memory allocated during the
timed steps (after the warm-up, so cuDNN's one-off algorithm search is not counted; bench_train measures the same
way). Each row builds its own network and runs alone; a row that fails is reported with its error and the next
one runs. Rows that need a GPU are skipped without one, unless --small.

The reference code is not part of stf and is never committed here: --ref-src names a folder holding its
training/, torch_utils/ and dnnlib/ folders (for example a checkout of github.com/Newbeeer/stf, which is EDM plus
the STF loss; keep it in a git-ignored folder such as ref-src/). An NVlabs/edm checkout runs the DSM rows only:
its EDMLoss has no STF target. With augmentation off the reference code fails when STF is on (it assigns the
training batch into the reference batch's other slots), so every STF row uses EDM's augmentation.

Usage:
  python3 tools/torch_reference_bench.py --ref-src DIR [--rows PATTERNS] [--out FILE.json]
  python3 tools/torch_reference_bench.py --ref-src DIR --small            # a tiny network on the CPU: checks it runs
  python3 tools/torch_reference_bench.py --ref-src DIR --rows cpu_small_dsm
  python3 tools/torch_reference_bench.py --list

--rows takes comma-separated names or shell patterns ('train_*_fp32_*,heun*'). Needs PyTorch and, for the
reference code, numpy and scipy; torch.compile rows need PyTorch 2 (older versions report them as skipped).
--budget SECONDS stops starting rows after that long (what is left is reported as skipped).
"""
import argparse
import datetime
import fnmatch
import gc
import inspect
import json
import os
import platform
import sys
import time
import traceback


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--ref-src', metavar='DIR', help="folder holding the reference code's training/, torch_utils/, dnnlib/")
    ap.add_argument('--rows', default='*', help='comma-separated row names or shell patterns (default: all)')
    ap.add_argument('--list', action='store_true', help='print the rows and exit')
    ap.add_argument('--small', action='store_true', help='tiny networks and batches on the CPU: checks that every row runs')
    ap.add_argument('--out', metavar='FILE.json', help='write the results as JSON')
    ap.add_argument('--device', choices=['auto', 'cuda', 'cpu'], default='auto', help='device of the non-CPU rows')
    ap.add_argument('--batch', type=int, default=64, help='training batch of the rows without their own (default 64)')
    ap.add_argument('--rbatch', type=int, default=1024, help='STF reference batch (default 1024)')
    ap.add_argument('--steps', type=int, default=20, help='timed training steps per row (default 20)')
    ap.add_argument('--warmup', type=int, default=5, help='untimed training steps first (default 5)')
    ap.add_argument('--threads', type=int, default=2, help='CPU threads of the CPU row (default 2)')
    ap.add_argument('--budget', type=float, default=0, help='start no row after this many seconds (0: no limit)')
    ap.add_argument('--seed', type=int, default=0)
    return ap.parse_args(argv)


class Skip(Exception):
    """A row that cannot run here (no GPU, a reference checkout without STF): reported, not a failure."""


# ---- the reference code ---------------------------------------------------------------------------------

def import_reference(ref_src):
    if not ref_src:
        sys.exit('torch_reference_bench: --ref-src DIR is required: a folder holding the reference code\'s '
                 'training/, torch_utils/ and dnnlib/ (e.g. from github.com/Newbeeer/stf)')
    missing = [p for p in ('training/networks.py', 'training/loss.py', 'training/augment.py',
                           'torch_utils/persistence.py', 'dnnlib/__init__.py')
               if not os.path.isfile(os.path.join(ref_src, p))]
    if missing:
        sys.exit(f'torch_reference_bench: --ref-src {ref_src} lacks {", ".join(missing)} (expected a folder '
                 'holding the reference code\'s training/, torch_utils/ and dnnlib/)')
    sys.path.insert(0, os.path.abspath(ref_src))
    from training import networks, loss, augment  # noqa: E402  (the reference code, at run time only)
    return networks, loss, augment


class Bench:
    def __init__(self, args, torch, ref):
        self.args, self.torch = args, torch
        self.networks, self.loss, self.augment = ref
        self.has_stf = 'stf' in inspect.signature(self.loss.EDMLoss.__call__).parameters
        cuda = torch.cuda.is_available() and args.device != 'cpu' and not args.small
        if args.device == 'cuda' and not torch.cuda.is_available():
            sys.exit('torch_reference_bench: --device cuda but PyTorch sees no CUDA device')
        self.dev = torch.device('cuda' if cuda else 'cpu')
        torch.backends.cudnn.benchmark = True

    # -- helpers --

    def sync(self, dev=None):
        if (dev or self.dev).type == 'cuda':
            self.torch.cuda.synchronize()

    def need_gpu(self):
        if self.dev.type != 'cuda' and not self.args.small:
            raise Skip('needs a CUDA device (--small runs it on the CPU as a check)')

    def need_stf(self):
        if not self.has_stf:
            raise Skip('the reference code at --ref-src has no STF loss (EDMLoss without stf=); use Newbeeer/stf')

    def set_tf32(self, on):
        self.torch.backends.cuda.matmul.allow_tf32 = on
        self.torch.backends.cudnn.allow_tf32 = on

    def make_net(self, arch, channels=3, use_fp16=False, small_cpu_row=False, augment_dim=0):
        """EDM's CIFAR-10 DDPM++ or NCSN++ (train.py --arch), with 9 augmentation labels, dropout 0.13."""
        kw = dict(img_resolution=32, img_channels=channels, label_dim=0, use_fp16=use_fp16, model_type='SongUNet',
                  model_channels=128, channel_mult=[2, 2, 2], dropout=0.13, augment_dim=9)
        if arch == 'ddpmpp':
            kw.update(embedding_type='positional', encoder_type='standard', decoder_type='standard',
                      channel_mult_noise=1, resample_filter=[1, 1])
        else:
            kw.update(embedding_type='fourier', encoder_type='residual', decoder_type='standard',
                      channel_mult_noise=2, resample_filter=[1, 3, 3, 1])
        if small_cpu_row:
            kw.update(model_channels=32, channel_mult=[1, 2, 2], num_blocks=2, attn_resolutions=[16],
                      augment_dim=augment_dim)
        elif self.args.small:
            kw.update(model_channels=16, num_blocks=1)
        return self.networks.EDMPrecond(**kw)

    def autocast_bf16(self, net):
        """Runs the U-Net inside EDMPrecond under bf16 autocast and hands its output back in float32.

        Autocast around the whole call fails: EDMPrecond asserts that the U-Net returns its own dtype. Wrapping
        the U-Net is what a user of the reference code would do, and keeps the preconditioning and the loss in
        float32, as stf's bf16 mode does."""
        torch = self.torch

        class Bf16(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x, *args, **kwargs):
                with torch.autocast(x.device.type, dtype=torch.bfloat16):
                    return self.inner(x, *args, **kwargs).float()

        net.model = Bf16(net.model)
        return net

    def augment_pipe(self):
        # EDM's CIFAR-10 augmentation (train.py --augment 0.12): flips, scaling, rotation, anisotropy, translation.
        return self.augment.AugmentPipe(p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)

    def free(self):
        gc.collect()
        if self.dev.type == 'cuda':
            self.torch.cuda.empty_cache()

    # -- rows --

    def flops(self):
        """Counts the forward pass of one image as nn::forward_flops does: 2 per multiply-add of every
        convolution (the resampling filters included), attention product and linear layer."""
        torch = self.torch
        net = self.make_net('ddpmpp').to(self.dev).eval()
        out = dict(device=str(self.dev), params=sum(p.numel() for p in net.parameters()))
        x, sigma = torch.randn(1, 3, 32, 32, device=self.dev), torch.ones(1, device=self.dev)
        counted = dict(conv=0, attention=0, linear=0)
        F = torch.nn.functional

        class Count(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                name = getattr(func, '__name__', '')
                if func is F.conv2d:  # per output value: (in channels / groups) x kh x kw multiply-adds
                    counted['conv'] += 2 * result.numel() * args[1][0].numel()
                elif func is F.conv_transpose2d:  # per input value: (out channels / groups) x kh x kw
                    counted['conv'] += 2 * args[0].numel() * args[1][0].numel()
                elif name == 'einsum' and len(args) == 3:  # two operands: every index combination once
                    sizes = {}
                    for letters, t in zip(args[0].split('->')[0].split(','), args[1:]):
                        sizes.update(zip(letters, t.shape))
                    counted['attention'] += 2 * int(torch.tensor(list(sizes.values())).prod())
                elif name in ('matmul', '__matmul__', 'mm', 'addmm', 'linear'):
                    a = args[1] if name == 'addmm' else args[0]
                    counted['linear'] += 2 * result.numel() * a.shape[-1]
                return result

        with torch.no_grad(), Count():
            net(x, sigma)
        out.update({f'gflop_{k}': v / 1e9 for k, v in counted.items()})
        out['gflop_per_img'] = sum(counted.values()) / 1e9
        try:  # PyTorch's own counter (2.1 and later), for comparison
            from torch.utils.flop_counter import FlopCounterMode
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                net(x, sigma)
            out['gflop_per_img_torch_counter'] = counter.get_total_flops() / 1e9
        except ImportError:
            pass
        return out

    def train(self, arch='ddpmpp', batch=None, stf=False, tf32=False, bf16=False, channels_last=False,
              compile_mode=None, use_fp16=False, cpu_row=False, rbatch=None, augment=None):
        torch, a = self.torch, self.args
        if stf:
            self.need_stf()
        dev = torch.device('cpu') if cpu_row else self.dev
        if not cpu_row:
            self.need_gpu()
        batch = batch or a.batch
        rbatch = rbatch or a.rbatch
        augment = (not cpu_row) if augment is None else augment  # EDM's pipe, except on the plain CPU row
        warmup, steps = a.warmup, a.steps
        if a.small:
            batch, rbatch, warmup, steps = (8 if cpu_row else 4), 16, 1, 2
        threads = torch.get_num_threads()
        if cpu_row:
            torch.set_num_threads(a.threads)
        try:
            self.set_tf32(tf32)
            if compile_mode and not hasattr(torch, 'compile'):
                raise Skip(f'torch.compile needs PyTorch 2 (this is {torch.__version__})')
            net = self.make_net(arch, channels=1 if cpu_row else 3, use_fp16=use_fp16, small_cpu_row=cpu_row,
                                augment_dim=9 if augment else 0)
            net = net.to(dev).train()
            if bf16:
                net = self.autocast_bf16(net)
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            model = torch.compile(net, mode=compile_mode) if compile_mode else net
            adam = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
            if dev.type == 'cuda' and 'fused' in inspect.signature(torch.optim.Adam).parameters:
                adam['fused'] = True
            opt = torch.optim.Adam(net.parameters(), **adam)
            loss_fn = self.loss.EDMLoss()
            aug = self.augment_pipe() if augment else None
            images = torch.randn(rbatch if stf else batch, 1 if cpu_row else 3, 32, 32, device=dev).clamp(-1, 1)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            extra = {}
            if self.has_stf:
                extra['stf'] = stf

            def step():
                opt.zero_grad(set_to_none=True)
                if stf:  # the reference code writes the augmented images into ref_images: give it a copy
                    extra['ref_images'] = images.clone()
                loss = loss_fn(net=model, images=images[:batch], augment_pipe=aug, **extra)
                loss.sum().mul(1.0 / batch).backward()
                opt.step()

            t0 = time.perf_counter()
            for _ in range(warmup):
                step()
            self.sync(dev)
            warmup_s = time.perf_counter() - t0
            if dev.type == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            self.sync(dev)
            sec = (time.perf_counter() - t0) / steps
            out = dict(device=str(dev), batch=batch, rbatch=rbatch if stf else 0, steps=steps, ms=sec * 1e3,
                       img_s=batch / sec, warmup_s=warmup_s)
            if dev.type == 'cuda':
                out['peak_gib'] = torch.cuda.max_memory_allocated() / 2**30
            if cpu_row:
                out['threads'] = torch.get_num_threads()
                out['params'] = sum(p.numel() for p in net.parameters())
            return out
        finally:
            torch.set_num_threads(threads)
            self.set_tf32(False)

    def stf_target(self, batch, rbatch, d=3072, reps=10):
        torch = self.torch
        self.need_stf()
        self.need_gpu()
        if self.args.small:
            batch, rbatch, d, reps = 8, 32, 48, 2
        self.set_tf32(False)
        gen = torch.Generator(device='cpu').manual_seed(self.args.seed)
        y = torch.randn(batch, d, generator=gen).to(self.dev)
        ref = torch.randn(rbatch, d, generator=gen).to(self.dev)
        sigma = (torch.rand(batch, generator=gen) * 2 + 0.1).to(self.dev)
        loss = self.loss.EDMLoss()

        def reference():
            return loss.stf_targets(sigma, y, ref)

        def gemm_form():
            # ||y - x||^2 = ||y||^2 - 2 y.x + ||x||^2; ||y||^2 is constant along a row and drops out of the softmax.
            with torch.no_grad():
                logits = (y @ ref.t() - 0.5 * (ref * ref).sum(1)[None, :]) / (sigma[:, None] ** 2)
                return torch.softmax(logits, dim=1) @ ref

        out = dict(device=str(self.dev), batch=batch, rbatch=rbatch, d=d)
        for name, fn in (('reference', reference), ('gemm', gemm_form)):
            fn()
            self.sync()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            self.sync()
            out[f'{name}_ms'] = (time.perf_counter() - t0) / reps * 1e3
        a, b = reference(), gemm_form()
        out['rel_diff'] = ((a - b).norm() / a.norm()).item()
        return out

    def heun(self, bf16=False, batch=256, num_steps=18, cpu_row=False):
        """EDM's deterministic sampler (generate.py's edm_sampler with S_churn 0): float64 state, float32 net.
        cpu_row: the CPU row's network (DDPM++-small, 32x32x1) on the CPU with --threads threads."""
        torch = self.torch
        dev = torch.device('cpu') if cpu_row else self.dev
        if not cpu_row:
            self.need_gpu()
        if self.args.small:
            batch, num_steps = 4, 3
        threads = torch.get_num_threads()
        if cpu_row:
            torch.set_num_threads(self.args.threads)
        try:
            return self._heun(dev, bf16, batch, num_steps, cpu_row)
        finally:
            torch.set_num_threads(threads)

    def _heun(self, dev, bf16, batch, num_steps, cpu_row):
        torch = self.torch
        self.set_tf32(False)
        channels = 1 if cpu_row else 3
        net = self.make_net('ddpmpp', channels=channels, small_cpu_row=cpu_row).to(dev).eval()
        if bf16:
            net = self.autocast_bf16(net)
        sigma_min, sigma_max, rho = 0.002, 80.0, 7.0

        def denoise(x, t):
            return net(x, t).to(torch.float64)

        def sample():
            with torch.no_grad():
                i = torch.arange(num_steps, dtype=torch.float64, device=dev)
                t = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
                t = torch.cat([t, torch.zeros_like(t[:1])])
                x = torch.randn(batch, channels, 32, 32, dtype=torch.float64, device=dev) * t[0]
                for k in range(num_steps):
                    d = (x - denoise(x, t[k])) / t[k]
                    x_next = x + (t[k + 1] - t[k]) * d
                    if k < num_steps - 1:
                        d2 = (x_next - denoise(x_next, t[k + 1])) / t[k + 1]
                        x_next = x + (t[k + 1] - t[k]) * (0.5 * d + 0.5 * d2)
                    x = x_next
                return x

        t0 = time.perf_counter()
        sample()
        self.sync(dev)
        warmup_s = time.perf_counter() - t0
        if dev.type == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        sample()
        self.sync(dev)
        sec = time.perf_counter() - t0
        out = dict(device=str(dev), batch=batch, steps=num_steps, evaluations=2 * num_steps - 1, s=sec,
                   img_s=batch / sec, warmup_s=warmup_s)
        if dev.type == 'cuda':
            out['peak_gib'] = torch.cuda.max_memory_allocated() / 2**30
        if cpu_row:
            out['threads'] = torch.get_num_threads()
        return out


def rows(b):
    """name -> (what it measures, callable), in the order they run: the comparison's core first, compile last."""
    cl_bf16 = dict(stf=True, tf32=True, bf16=True, channels_last=True)
    return [
        ('flops_ddpmpp', 'parameters and forward GFLOP per image', b.flops),
        ('train_ddpmpp_fp32_dsm', 'DDPM++ step, fp32 (TF32 off), DSM', lambda: b.train()),
        ('train_ddpmpp_fp32_stf', 'DDPM++ step, fp32, STF', lambda: b.train(stf=True)),
        ('train_ddpmpp_tf32_dsm', 'DDPM++ step, TF32, DSM', lambda: b.train(tf32=True)),
        ('train_ddpmpp_tf32_stf', 'DDPM++ step, TF32, STF', lambda: b.train(stf=True, tf32=True)),
        ('train_ncsnpp_fp32_dsm', 'NCSN++ step, fp32, DSM', lambda: b.train('ncsnpp')),
        ('train_ncsnpp_fp32_stf', 'NCSN++ step, fp32, STF', lambda: b.train('ncsnpp', stf=True)),
        ('train_ddpmpp_fp32_dsm_b128', 'DDPM++ step, fp32, DSM, batch 128', lambda: b.train(batch=128)),
        ('stf_target_b64_n1024', 'STF target alone, B 64, n 1024, d 3072', lambda: b.stf_target(64, 1024)),
        ('stf_target_b256_n2048', 'STF target alone, B 256, n 2048, d 3072', lambda: b.stf_target(256, 2048)),
        ('heun18_fp32', 'Heun 18 steps, batch 256, network fp32', lambda: b.heun()),
        ('train_ddpmpp_fp16edm_stf', "DDPM++ step, EDM's fp16 mode, STF", lambda: b.train(stf=True, use_fp16=True)),
        ('train_ddpmpp_fp16edm_tf32_stf', "DDPM++ step, EDM's fp16 mode with TF32, STF",
         lambda: b.train(stf=True, use_fp16=True, tf32=True)),
        ('train_ddpmpp_fp32_dsm_b512', 'DDPM++ step, fp32, DSM, batch 512', lambda: b.train(batch=512)),
        ('cpu_small_dsm', 'CPU row: DDPM++-small, 32x32x1, batch 32, DSM', lambda: b.train(batch=32, cpu_row=True)),
        ('cpu_small_stf', 'CPU row with STF n 256 and augmentation p 0.12 (9 labels)',
         lambda: b.train(batch=32, cpu_row=True, stf=True, rbatch=256, augment=True)),
        ('cpu_small_heun18', 'CPU row network, Heun 18 steps, batch 16, on the CPU',
         lambda: b.heun(batch=16, cpu_row=True)),
        ('train_bf16_stf', 'DDPM++ step, bf16 autocast + TF32, STF', lambda: b.train(stf=True, tf32=True, bf16=True)),
        ('train_cl_bf16_stf', 'the same, channels_last', lambda: b.train(**cl_bf16)),
        ('heun18_bf16', 'Heun 18 steps, batch 256, network under bf16 autocast', lambda: b.heun(bf16=True)),
        ('train_compile_cl_bf16_stf', 'channels_last + bf16 autocast + torch.compile, STF',
         lambda: b.train(compile_mode='default', **cl_bf16)),
        ('train_compile_cl_bf16_graphs_stf', 'the same with CUDA graphs (mode reduce-overhead)',
         lambda: b.train(compile_mode='reduce-overhead', **cl_bf16)),
        ('train_compile_fp32_dsm', 'DDPM++ step, fp32, DSM, torch.compile', lambda: b.train(compile_mode='default')),
    ]


def fmt(result):
    return '  '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in result.items())


def main(argv):
    args = parse_args(argv)
    patterns = [p.strip() for p in args.rows.split(',') if p.strip()]
    if args.list:  # the row table needs neither PyTorch nor the reference code: list it from a stand-in
        class Names:
            def __getattr__(self, _):
                return None
        for name, what, _ in rows(Names()):
            print(f'{name:<34s} {what}')
        return 0
    try:
        import torch
    except ImportError:
        sys.exit('torch_reference_bench: PyTorch is not installed for ' + sys.executable)
    ref = import_reference(args.ref_src)
    torch.manual_seed(args.seed)
    b = Bench(args, torch, ref)
    table = rows(b)
    chosen = [r for r in table if any(fnmatch.fnmatchcase(r[0], p) for p in patterns)]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(r[0], p) for r in table)]
    if unknown:
        sys.exit(f'torch_reference_bench: --rows {",".join(unknown)} matches no row (--list shows them)')

    res = dict(tool='tools/torch_reference_bench.py', date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
               host=platform.node(), cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(),
               python=platform.python_version(), torch=torch.__version__,
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
               device=torch.cuda.get_device_name(0) if b.dev.type == 'cuda' else 'cpu',
               ref_src=os.path.abspath(args.ref_src), ref_has_stf=b.has_stf, small=args.small, batch=args.batch,
               rbatch=args.rbatch, steps=args.steps, warmup=args.warmup, rows={})
    print(json.dumps({k: v for k, v in res.items() if k != 'rows'}), flush=True)
    t_start = time.time()
    failed = 0
    for name, what, fn in chosen:
        if args.budget and time.time() - t_start > args.budget:
            res['rows'][name] = dict(skipped=f'budget of {args.budget:g} s spent')
            print(f'{name:<34s} skipped: budget spent', flush=True)
            continue
        try:
            r = fn()
            res['rows'][name] = r
            print(f'{name:<34s} {fmt(r)}', flush=True)
        except Skip as e:
            res['rows'][name] = dict(skipped=str(e))
            print(f'{name:<34s} skipped: {e}', flush=True)
        except Exception as e:  # one row's failure (out of memory, no compiler, ...) must not stop the others
            failed += 1
            msg = f'{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ""}'
            res['rows'][name] = dict(error=msg)
            print(f'{name:<34s} FAILED {msg}', flush=True)
            traceback.print_exc(file=sys.stderr)
        finally:
            b.free()
    res['elapsed_s'] = time.time() - t_start
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=1)
        print(f'wrote {args.out}')
    print(f'{len(chosen)} rows, {failed} failed, {res["elapsed_s"]:.0f} s', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
