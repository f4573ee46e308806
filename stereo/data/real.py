"""Real benchmarks in their official layouts: Middlebury 2014/2021 (and MiddEval3), ETH3D two-view, KITTI
2012/2015. Registered as ``data.name`` values ``middlebury``, ``eth3d``, ``kitti``.

- Middlebury / ETH3D: one folder per scene anywhere below the root holding ``im0.png``, ``im1.png`` and
  the left ground truth ``disp0.pfm`` (Middlebury 2014/2021) or ``disp0GT.pfm`` (MiddEval3, ETH3D), with
  ``calib.txt``; unknown = inf. ``data.region=nonocc`` evaluates only where ``mask0nocc.png`` is 255.
- KITTI: ``<root>/training/{colored_0,colored_1,disp_occ,disp_noc}`` (2012) or
  ``<root>/training/{image_2,image_3,disp_occ_0,disp_noc_0}`` (2015), frames ``NNNNNN_10.png``; ground
  truth 16-bit PNG / 256, 0 = none. ``data.region=all`` reads ``disp_occ``, ``nonocc`` reads ``disp_noc``.

Both splits list the pairs that have ground truth (these benchmarks have no separate test ground truth);
``testing/`` folders are for ``stereo-infer``. The metric each benchmark reports is in :data:`PRIMARY`.
"""

from __future__ import annotations

from pathlib import Path

from stereo.config import DataConfig
from stereo.data.registry import Sample, region_of, register_dataset
from stereo.errors import DatasetError

PRIMARY = {"middlebury": "bad2", "eth3d": "bad1", "kitti": "d1", "sceneflow": "epe", "folder": "epe"}
DISPARITY_SUFFIXES = (".pfm", ".png", ".npy")


def _root(cfg: DataConfig) -> Path:
    root = Path(str(cfg.root)).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{cfg.name} root {root} does not exist or is not a directory")
    return root


def _two_view_scenes(cfg: DataConfig, name: str, gt_names: tuple[str, ...]) -> list[Sample]:
    root = _root(cfg)
    region = region_of(cfg)
    samples, no_gt = [], []
    for left in sorted(root.rglob("im0.png")):
        scene = left.parent
        right = scene / "im1.png"
        if not right.is_file():
            raise DatasetError(f"{scene}: has im0.png but no im1.png")
        gt = next((scene / g for g in gt_names if (scene / g).is_file()), None)
        if gt is None:
            no_gt.append(scene.name)
            continue
        mask = None
        if region in ("nonocc", "occluded"):
            mask = scene / "mask0nocc.png"
            if not mask.is_file():
                raise DatasetError(f"{scene}: data.region={region} needs {mask.name}, which does not exist")
        samples.append(Sample(left, right, gt, name, mask, occluded=region == "occluded"))
    if not samples:
        extra = f" ({len(no_gt)} scene(s) without ground truth: {', '.join(no_gt[:5])})" if no_gt else ""
        raise DatasetError(
            f"no {name} scenes with ground truth under {root}: expected <scene>/im0.png, im1.png and "
            f"{' or '.join(gt_names)}{extra}"
        )
    return samples


@register_dataset("middlebury")
def middlebury_samples(cfg: DataConfig, split: str, render_pass: str) -> list[Sample]:
    return _two_view_scenes(cfg, "middlebury", ("disp0.pfm", "disp0GT.pfm"))


@register_dataset("eth3d")
def eth3d_samples(cfg: DataConfig, split: str, render_pass: str) -> list[Sample]:
    return _two_view_scenes(cfg, "eth3d", ("disp0GT.pfm",))


@register_dataset("kitti")
def kitti_samples(cfg: DataConfig, split: str, render_pass: str) -> list[Sample]:
    root = _root(cfg)
    base = root / "training" if (root / "training").is_dir() else root
    region = region_of(cfg)
    if region == "edges":
        raise DatasetError(
            "KITTI's ground truth is sparse (LiDAR points), so it has no depth edges to find: "
            "data.region=edges needs dense ground truth (sceneflow, middlebury, eth3d, folder)"
        )
    layouts = [("image_2", "image_3", "disp_occ_0", "disp_noc_0"), ("colored_0", "colored_1", "disp_occ", "disp_noc")]
    for left_dir, right_dir, occ, noc in layouts:
        if (base / left_dir).is_dir():
            gt_dir = base / (noc if region == "nonocc" else occ)
            for folder in {gt_dir, base / noc} if region == "occluded" else {gt_dir}:
                if not folder.is_dir():
                    raise DatasetError(f"KITTI ground truth folder {folder} does not exist (data.region={region})")
            samples = []
            for gt in sorted(gt_dir.glob("*_10.png")):
                left, right = base / left_dir / gt.name, base / right_dir / gt.name
                missing = [str(p) for p in (left, right) if not p.is_file()]
                if missing:
                    raise DatasetError(f"{gt}: missing {' and '.join(missing)}")
                if region == "occluded":  # the pixels of disp_occ that disp_noc leaves out
                    samples.append(Sample(left, right, gt, "kitti", mask=base / noc / gt.name, occluded=True))
                else:
                    samples.append(Sample(left, right, gt, "kitti"))
            if not samples:
                raise DatasetError(f"no NNNNNN_10.png ground truth in {gt_dir}")
            return samples
    raise DatasetError(
        f"{root} is not a KITTI root: expected training/image_2 (2015) or training/colored_0 (2012) "
        f"with disp_occ(_0)/disp_noc(_0)"
    )


@register_dataset("folder")
def folder_samples(cfg: DataConfig, split: str, render_pass: str) -> list[Sample]:
    """Your own pairs: ``<root>/left``, ``<root>/right`` and ``<root>/disparity`` (left-view disparities as
    PFM, 16-bit PNG x 256, or a 2-D float ``.npy``), matched by the path below each folder as
    ``stereo-infer`` matches folders (``left/a/0001.png`` <-> ``disparity/a/0001.pfm``). Without a
    ``disparity/`` folder the pairs are unlabeled (``Sample.disparity`` None): ``train.loss=photometric``
    trains on them; what needs ground truth refuses them (:func:`~stereo.data.registry.require_ground_truth`)."""
    from stereo.data.pairs import find_pairs

    root = _root(cfg)
    if region_of(cfg) in ("nonocc", "occluded"):
        raise DatasetError(f"data=folder has no occlusion masks: data.region={region_of(cfg)} works with kitti, "
                           "middlebury, eth3d and sceneflow; use data.region=all")  # fmt: skip
    missing = [d for d in ("left", "right") if not (root / d).is_dir()]
    if missing:
        raise DatasetError(f"{root}: data=folder needs the folders left/, right/ and (for ground truth) disparity/ "
                           f"(missing: {', '.join(missing)})")  # fmt: skip
    if not (root / "disparity").is_dir():  # unlabeled pairs: for train.loss=photometric (checked by their users)
        return [
            Sample(p.left, p.right, None, "folder", name=p.name)
            for p in find_pairs(str(root / "left"), str(root / "right"))
        ]
    samples, no_gt = [], []
    for pair in find_pairs(str(root / "left"), str(root / "right")):
        gt = next((root / "disparity" / f"{pair.name}{x}" for x in DISPARITY_SUFFIXES
                   if (root / "disparity" / f"{pair.name}{x}").is_file()), None)  # fmt: skip
        if gt is None:
            no_gt.append(pair.name)
            continue
        samples.append(Sample(pair.left, pair.right, gt, "folder", name=pair.name))
    if no_gt:
        raise DatasetError(f"{root}: {len(no_gt)} pair(s) have no disparity/<name>{{.pfm,.png,.npy}}: "
                           f"{', '.join(no_gt[:5])}")  # fmt: skip
    return samples
