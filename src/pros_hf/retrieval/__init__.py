"""Face-aware retrieval: build a face-dominant pre-training set from raw images (an image is kept when a face
detector finds a face that fills enough of it).

detect faces (``detectors``) -> keep face-dominant images and crop them square (``dominance``) -> embed the crops
(``embedding``) -> FAISS index, near-duplicate removal and retrieval around seed faces (``index``) -> resumable,
sharded pipeline (``curation``) -> counts, montage and histogram (``report``).
"""

from .curation import CurationConfig, CurationResult, curate, embed_seed_folder, process_shard, push_curated_dataset
from .demo_data import write_demo_images, write_lfw_subset
from .detectors import FACE_DETECTORS, Detection, FaceDetector, HaarCascadeDetector, YuNetDetector, get_face_detector
from .dominance import (
    PAD_MODES,
    REJECTION_REASONS,
    FaceDecision,
    FaceThresholds,
    box_area,
    clip_box,
    crop_square_face,
    face_dominance,
    select_face,
    square_crop_box,
)
from .embedding import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    POOLINGS,
    ImageEmbedder,
    load_embedding_model,
    random_init_embedding_model,
)
from .face_crops import crop_faces_in_dataset
from .index import (
    IndexSettings,
    add_embedding_index,
    choose_nlist,
    find_near_duplicates,
    retrieve_around_queries,
    search_neighbors,
)
from .report import CurationReport, DetectionCounts, save_dominance_histogram, save_montage
from .sources import DatasetSource, FolderSource, open_source

__all__ = [
    "CurationConfig",
    "CurationReport",
    "CurationResult",
    "DatasetSource",
    "Detection",
    "DetectionCounts",
    "FACE_DETECTORS",
    "FaceDecision",
    "FaceDetector",
    "FaceThresholds",
    "FolderSource",
    "HaarCascadeDetector",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageEmbedder",
    "IndexSettings",
    "PAD_MODES",
    "POOLINGS",
    "REJECTION_REASONS",
    "YuNetDetector",
    "add_embedding_index",
    "box_area",
    "choose_nlist",
    "clip_box",
    "crop_faces_in_dataset",
    "crop_square_face",
    "curate",
    "embed_seed_folder",
    "face_dominance",
    "find_near_duplicates",
    "get_face_detector",
    "load_embedding_model",
    "open_source",
    "process_shard",
    "push_curated_dataset",
    "random_init_embedding_model",
    "retrieve_around_queries",
    "save_dominance_histogram",
    "save_montage",
    "search_neighbors",
    "select_face",
    "square_crop_box",
    "write_demo_images",
    "write_lfw_subset",
]
