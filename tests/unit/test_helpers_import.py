from helpers import SHARED_DATA, shared_path


def test_shared_path_points_next_to_repo():
    """The helpers resolve ../shared/data next to the repository (importable in any mode)."""
    assert SHARED_DATA.name == "data" and SHARED_DATA.parent.name == "shared"
    assert shared_path("mosi_utterance").is_dir()
