"""case_reader: a stored file that is there is read where it is; a moved one is found under the
nearest folder of its data set's name where data_dir holds it now; found nowhere, the stored path is named."""

from pathlib import Path

from bindiff.adapters.masks import case_reader


def _files(root: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        paths.append(path)
    return paths


def test_a_stored_file_that_is_there_is_read_where_it_is_and_a_moved_one_follows_the_data_set(tmp_path, monkeypatch):
    monkeypatch.delenv("BINDIFF_DATA_DIR", raising=False)
    old = tmp_path / "old" / "brats2015_deepmedic"
    new = tmp_path / "new" / "brats2015_deepmedic"
    names = ("c1/OTMultiClass.nii.gz", "c1/brainmask.nii.gz", "c1/Flair.nii.gz")
    stored = _files(old, *names)
    moved_to = _files(new, *names)
    entry = {"case_id": "c1", "label": str(stored[0]), "brain": str(stored[1]), "image": str(stored[2])}
    read = case_reader("brats2015_deepmedic", data_dir=tmp_path / "new")
    case = read(entry)  # every stored file is there: read as stored, wherever the data folder now points
    assert (case.label, case.brain, case.image) == tuple(stored)
    for path in stored:
        path.unlink()
    case = read(entry)  # gone: each found under the named data set's folder where data_dir holds it now
    assert (case.label, case.brain, case.image) == tuple(moved_to)


def test_the_nearest_folder_of_the_data_sets_name_anchors_a_moved_path(tmp_path, monkeypatch):
    monkeypatch.delenv("BINDIFF_DATA_DIR", raising=False)
    (want,) = _files(tmp_path / "new" / "msd_hippocampus", "labelsTr/h_1.nii.gz")
    gone = tmp_path / "msd_hippocampus" / "backup" / "msd_hippocampus" / "labelsTr" / "h_1.nii.gz"
    case = case_reader("msd_hippocampus", data_dir=tmp_path / "new")({"case_id": "h_1", "label": str(gone)})
    assert case.label == want


def test_a_data_set_found_nowhere_leaves_the_stored_path_to_be_named(tmp_path, monkeypatch):
    monkeypatch.delenv("BINDIFF_DATA_DIR", raising=False)
    gone = "/gone/data/msd_hippocampus/labelsTr/h_1.nii.gz"
    case = case_reader("msd_hippocampus", data_dir=tmp_path / "nowhere")({"case_id": "h_1", "label": gone})
    assert str(case.label) == gone
