"""The pinned official split lists: where they come from and what each file must hash to.

Copied from the UniMatch repository's `splits/` folder (MIT licence, (c) 2022 Lihe Yang) at one commit, so every
user trains on byte-identical lists; `datasets.prepare` downloads them and refuses any file whose sha256 differs.
The lists themselves are not vendored: only their checksums and line counts are.
"""
from __future__ import annotations

SOURCE = "github.com/LiheYoung/UniMatch, folder splits/"
COMMIT = "0324f3dd4a22128105a5eb135d2586c0bb3cc647"
# A commit-pinned raw URL never changes content, unlike a branch URL.
RAW_URL_PATTERN = "https://raw.githubusercontent.com/LiheYoung/UniMatch/{commit}/splits/{path}"

# The COCO unlabeled lists are not pinned here: they were not available when the manifest was made. UniMatch's
# COCO unlabeled set is train2017 minus the labeled images, which `datasets.prepare` derives locally.
UNPINNED_NOTE = ("COCO unlabeled lists are not in the pinned manifest; they are derived locally as every "
                 "train2017 image not in the split's labeled list")

# path under splits/ -> (sha256, number of lines)
FILES: dict[str, tuple[str, int]] = {
    "cityscapes/1_16/labeled.txt": ("64195914dce1231133c7dc611fece213bc3a87fe4e0b73fbd96add7dfa8a2f46", 186),
    "cityscapes/1_16/unlabeled.txt": ("7f18e2aefb5e88598910e291a935117daaeef51c6828edeb62f8a6c882be0a79", 2789),
    "cityscapes/1_2/labeled.txt": ("90d8e29d4d182c3b3def3d1fac02e454868c4ca632f73696bb521aa05e937ee4", 1488),
    "cityscapes/1_2/unlabeled.txt": ("23d0efaa43a65608b25eb078ed058c53979957e44407d787e3abdda9a795d289", 1487),
    "cityscapes/1_30/labeled.txt": ("b11041fef70476fb5564af0ef006a8013622da9cf49c7faf4182f3e26eb32742", 100),
    "cityscapes/1_30/unlabeled.txt": ("1b8a9b7bb4f9f6f06a3dffe766efe8b10a14a0137637af1738bbb417a5c85dbe", 2875),
    "cityscapes/1_4/labeled.txt": ("8edd24ae817eed7b49d0a06c95b7bfaf769002c98387e4edeab5e221ab7791c3", 744),
    "cityscapes/1_4/unlabeled.txt": ("6fc53258ed2e40f72f4a22b6e20d60a789168fdf6b860033f826e8bee3900e9b", 2231),
    "cityscapes/1_8/labeled.txt": ("97291dfc509a8c90ee94e1c5fd1f7668c21205b995f53b963ac133f0ed96ee8e", 372),
    "cityscapes/1_8/unlabeled.txt": ("5d7d33e39a8bda908e12d7f33ecb3299f93a8596fbe3c5e0cc1f2d3f5d358459", 2603),
    "cityscapes/val.txt": ("cf5aa35c0e4446bc684b61b6be88e22299ef7b1851852b53fc6a34794f161544", 500),
    "coco/1_128/labeled.txt": ("06067c0fb879b8e6ab8f4bdab3dfa641e8e4da2990200fa156daa33670329d79", 925),
    "coco/1_256/labeled.txt": ("4cdf41b9d3b3afc3734057a605015860501199ed3680370ccb2c677fc159b127", 463),
    "coco/1_32/labeled.txt": ("781b5990914f7422ee9e1f6325a914f289e077621b77b9cd066c2d01d33a939e", 3697),
    "coco/1_512/labeled.txt": ("bd0ff85bf2d35b4641d08c2201257ad5b5f02f85ea0da457f44f0b97c4caeb37", 232),
    "coco/1_64/labeled.txt": ("622b84ccbb5dcba32f4f5bb4ffaf1a9cf3e3f1f460b55dc02605fd099ebf1337", 1849),
    "coco/val.txt": ("5a296a8b638114611e81c3b2257ec1720c8c16300f29ac24fcd8ddf08c9eb6d8", 5000),
    "pascal/1464/labeled.txt": ("b20486876df309c57c8230e957b2957fff5392ff5cb11f225e8453ed6c50ba3e", 1464),
    "pascal/1464/unlabeled.txt": ("3ba331d08fee0751486a8be3f9f269f9efc09faa82a32a703bbb7deda4d66544", 9118),
    "pascal/183/labeled.txt": ("de3f4680391cb15324402dae17ac0919933d0d9004c11a641c924f3f67147f9f", 183),
    "pascal/183/unlabeled.txt": ("39aa3fd2997799c57c7d68d1ab342e2ebf53224ab10c1766a9fcd1554afbfd6a", 10399),
    "pascal/1_16/labeled.txt": ("0f5e114e6504c8afec6523db91f05503f120d1365cf505e6f4ef99f316d5873b", 662),
    "pascal/1_16/unlabeled.txt": ("29b30bf7adb5d39e642c57e3a3f4f26f9d4fb8f145098c430a597ef99160e36f", 9920),
    "pascal/1_4/labeled.txt": ("a4573ca0fa8f97c4013dba5f8b233e77a1a8dc7877539b1eb18c8206d37227d0", 2646),
    "pascal/1_4/unlabeled.txt": ("832ccd3a7971b1ed79e77f606a6736fa58d85f88aaf2eb88c856b27af74c847b", 7936),
    "pascal/1_8/labeled.txt": ("c5ea9bb095158a137e4c1db739b07d54a89af697de24ffd9e576493a4189653f", 1323),
    "pascal/1_8/unlabeled.txt": ("5246f6e0bec70363a5b898e0d685d37b0afcfab4a71c010e7026555294d9eca9", 9259),
    "pascal/366/labeled.txt": ("74f6bd1e459a8b46fc204529d70b603769f8a45aef4553df8a5c04b5698e77b7", 366),
    "pascal/366/unlabeled.txt": ("591c593546d1dbb65bd4d08ae99fabc1e9958d614c8079c8961422b8b7df7433", 10216),
    "pascal/732/labeled.txt": ("02c8ec5b62e27364f5bc91eb95bccf54debaa721e9d31c50c07507aea258fd0f", 732),
    "pascal/732/unlabeled.txt": ("8ddf828ec616b551447dc402c2c53eb7d0044697a0b6bacd6190ee843ffbf340", 9850),
    "pascal/92/labeled.txt": ("8a02aa6a1253178b105bd25b36f0a27daeedf6b3959f399aa47d24783f3a8306", 92),
    "pascal/92/unlabeled.txt": ("a3eb5ef8d2ae547f131bfa60b8111d21700d458b545741336633d5aa209254d5", 10490),
    "pascal/train_aug.txt": ("f04ab664c71f84950a3a1fd28544b6851500c81a9aff890c4b9279639a32152c", 10582),
    "pascal/u2pl_1_16/labeled.txt": ("a58cf5eda18c8e060c8fef0233b388b488e62e5903076fed90b5bd34cf6735d3", 662),
    "pascal/u2pl_1_16/unlabeled.txt": ("4f038ee0eef3dc96863906821f2eb78c430941d9151ad78366fdbcc0b9e3aa8f", 9920),
    "pascal/u2pl_1_4/labeled.txt": ("b740bcf1ac91477ff0df913594ea70a00ced359a007a4050cac487f136470fa4", 2646),
    "pascal/u2pl_1_4/unlabeled.txt": ("43652ae8048ee32a75df1e27dd56147ad606d65a3721ac056294d6c7fb08ee06", 7936),
    "pascal/u2pl_1_8/labeled.txt": ("cebe5f2fda695dd72ff3336d6bfef95967c903fe4d404d9827a42c5fbc1dfd8a", 1323),
    "pascal/u2pl_1_8/unlabeled.txt": ("fc4708a91ce72d15c1bf3515334abcc09d604f83f5110c12a5548af126e6f768", 9259),
    "pascal/val.txt": ("df002e3a730c57678f63aa3e46a4c827a4066f1dc1814e24d0e8b215075e0c6c", 1449),
}


def files_for(dataset: str) -> dict[str, tuple[str, int]]:
    """The pinned files of one dataset, keyed by their path inside that dataset's split folder."""
    prefix = f"{dataset}/"
    return {path[len(prefix):]: entry for path, entry in FILES.items() if path.startswith(prefix)}


def url_for(dataset: str, relative: str) -> str:
    """The commit-pinned download URL of one split file of `dataset`."""
    return RAW_URL_PATTERN.format(commit=COMMIT, path=f"{dataset}/{relative}")


def pinned_splits(dataset: str) -> list[str]:
    """Label-split folder names that the manifest holds a labeled list for."""
    return sorted({rel.split("/")[0] for rel in files_for(dataset) if rel.endswith("/labeled.txt")})
