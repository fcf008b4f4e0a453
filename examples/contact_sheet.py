"""Render synthetic faces and save a contact sheet with their 68 landmarks, to check the generator by eye.

python examples/contact_sheet.py --output /tmp/synthetic_faces_contact_sheet.png --num 64 --seed 0
"""

import argparse
import os

from pros_hf.data.contact_sheet import draw_contact_sheet
from pros_hf.data.synthetic import BACKGROUNDS, make_synthetic_faces


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="synthetic_faces_contact_sheet.png", help="PNG file to write.")
    parser.add_argument("--num", type=int, default=64, help="Number of faces on the sheet.")
    parser.add_argument("--seed", type=int, default=0, help="Same seed, same faces.")
    parser.add_argument("--image_size", type=int, default=128, help="Side of each face image in pixels (>= 32).")
    parser.add_argument("--columns", type=int, default=8, help="Faces per row.")
    parser.add_argument(
        "--num_identities",
        type=int,
        default=None,
        help="Distinct people (default num / 10): fewer shows how one identity varies.",
    )
    parser.add_argument("--background", default="clutter", choices=BACKGROUNDS, help="Background kind.")
    parser.add_argument("--pose_scale", type=float, default=1.0, help="0 = frontal faces, 1 = default pose ranges.")
    parser.add_argument("--no_landmarks", action="store_true", help="Show the images without landmark dots.")
    args = parser.parse_args(argv)
    output = check_output(args.output)  # before rendering: the faces would be lost to a bad file name
    for name in ("num", "columns"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be at least 1, got {getattr(args, name)}.")

    try:  # make_synthetic_faces checks every setting before it renders a face
        dataset = make_synthetic_faces(args.num, image_size=args.image_size, seed=args.seed,
                                       num_identities=args.num_identities, background=args.background,
                                       pose_scale=args.pose_scale)  # fmt: skip
    except ValueError as error:  # the message names the setting, as its flag does
        raise SystemExit(f"contact_sheet.py: {error}") from None
    if args.no_landmarks:
        dataset = dataset.remove_columns("landmarks")
    sheet = draw_contact_sheet(dataset, columns=args.columns, point_radius=max(0.6, args.image_size / 128))
    sheet.save(output)
    print(f"wrote {output} ({sheet.width}x{sheet.height}, {args.num} faces)")
    return output


def check_output(path: str) -> str:
    """The file to write: ``.png`` added to a name without an extension; SystemExit for a folder, an extension
    Pillow cannot write, or a folder that does not exist."""
    from PIL import Image

    if os.path.isdir(path):
        raise SystemExit(f"--output {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'sheet.png')!r}.")
    extension = os.path.splitext(path)[1].lower()
    if not extension:
        path += ".png"
    elif extension not in Image.registered_extensions() or Image.registered_extensions()[extension] not in Image.SAVE:
        raise SystemExit(f"--output {path!r}: Pillow cannot write {extension} files; use .png.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SystemExit(f"--output {path!r}: the folder {folder!r} does not exist.")
    return path


if __name__ == "__main__":
    main()
