"""Share of CamVid val pixels whose predicted class equals the PyTorch checkpoint's, per ONNX file.

python docs/results/camvid_deploy/agree.py path/to/CamVid student.pth student.onnx student.int8.onnx
"""

import sys
from pathlib import Path

import numpy as np

import ladseg

camvid, reference, *others = sys.argv[1:]
paths = sorted((Path(camvid) / "val").glob("*.png"))
ref_net = ladseg.load(reference)
nets = {name: ladseg.load(name) for name in others}
same = dict.fromkeys(nets, 0)
total = 0
for path in paths:
    ref = np.asarray(ref_net.predict(str(path)))
    total += ref.size
    for name, net in nets.items():
        same[name] += int((np.asarray(net.predict(str(path))) == ref).sum())
for name in nets:
    print(f"{name}: {100 * same[name] / total:.3f} % of {total} pixels ({len(paths)} images) equal to {reference}")
