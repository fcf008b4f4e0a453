"""Render synthetic faces and save a contact sheet with their 68 landmarks, to check the generator by eye.

    python examples/contact_sheet.py --output /tmp/synthetic_faces_contact_sheet.png --num 64 --seed 0
"""

import argparse

from pros_hf.data.contact_sheet import draw_contact_sheet
from pros_hf.data.synthetic import BACKGROUNDS, make_synthetic_faces


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="synthetic_faces_contact_sheet.png", help="PNG file to write.")
    parser.add_argument("--num", type=int, default=64, help="Number of faces on the sheet.")
    parser.add_argument("--seed", type=int, default=0, help="Same seed, same faces.")
    parser.add_argument("--image_size", type=int, default=128, help="Side of each face image in pixels (>= 32).")
    parser.add_argument("--columns", type=int, default=8, help="Faces per row.")
    parser.add_argument("--num_identities", type=int, default=None,
                        help="Distinct people (default num / 10): fewer shows how one identity varies.")
    parser.add_argument("--background", default="clutter", choices=BACKGROUNDS, help="Background kind.")
    parser.add_argument("--pose_scale", type=float, default=1.0, help="0 = frontal faces, 1 = default pose ranges.")
    parser.add_argument("--no_landmarks", action="store_true", help="Show the images without landmark dots.")
    args = parser.parse_args(argv)

    dataset = make_synthetic_faces(args.num, image_size=args.image_size, seed=args.seed,
                                   num_identities=args.num_identities, background=args.background,
                                   pose_scale=args.pose_scale)  # fmt: skip
    if args.no_landmarks:
        dataset = dataset.remove_columns("landmarks")
    sheet = draw_contact_sheet(dataset, columns=args.columns, point_radius=max(0.6, args.image_size / 128))
    sheet.save(args.output)
    print(f"wrote {args.output} ({sheet.width}x{sheet.height}, {args.num} faces)")


if __name__ == "__main__":
    main()
