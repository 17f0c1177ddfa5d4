"""`music-genre push` and `music-genre bundle`: their arguments (`add_push_arguments`, `add_bundle_arguments`) and
handlers (`run_push`, `run_bundle`), which the `music-genre` command lists in its table of commands.

Cheap to import: the publishing stack (datasets, huggingface_hub, transformers) is imported when push runs. A
fault is raised as `PublishError`, which the `music-genre` command shows as one line with exit status 2.
"""

import argparse
from pathlib import Path

from music_genre.hub_card import BUNDLED_REPO_ID


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="the run folder written by `music-genre train`")
    parser.add_argument("--repo-id", required=True, help="the model repo, OWNER/NAME")
    parser.add_argument(
        "--dataset-repo-id",
        help="the dataset repo for the run's cleaned, split data, which the card's model-index names "
        "(default: OWNER/prediction-of-music-genre-cleaned, under the model repo's owner)",
    )
    parser.add_argument("--space-repo-id", help="also publish the Gradio Space to this Space repo")
    parser.add_argument("--private", action="store_true", help="create the repos as private")
    parser.add_argument(
        "--stage-only",
        type=Path,
        metavar="DIR",
        help="write the folders each repo would receive into DIR (new, empty, or staged before); upload nothing",
    )
    parser.add_argument("--endpoint", metavar="URL", help="the Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--data", help="the run's CSV, where it is no longer at the path the run recorded")


def add_bundle_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="the run folder written by `music-genre train`")
    source.add_argument(
        "--code-only",
        action="store_true",
        help="copy only today's remote code (modeling/*_genre_ffn.py) into the bundled model, keeping its weights, "
        "config and card (for a code change that keeps the config's meaning; runs are not kept)",
    )
    source.add_argument(
        "--card-only",
        action="store_true",
        help="render the bundled model's card and reports/*.md again from the run's records it ships in reports/, "
        "with this checkout's templates (for a card change that needs no new run)",
    )
    parser.add_argument(
        "--repo-id",
        default=BUNDLED_REPO_ID,
        help="the model repo the card names (default: %(default)s, the project's)",
    )
    parser.add_argument("--into", type=Path, help="the folder to replace (default: the project's space/model)")


def run_bundle(args: argparse.Namespace) -> int:
    from music_genre.hub_card.publish import (
        SPACE_DIR,
        PublishError,
        bundle,
        refresh_bundled_card,
        refresh_bundled_code,
    )

    into = args.into
    if into is None:
        # The default is the source checkout's space/model, never the copy installed in site-packages.
        if not (SPACE_DIR.parent / "pyproject.toml").is_file():
            raise PublishError("bundle needs --into FOLDER outside a source checkout of music-genre-ffn")
        into = SPACE_DIR / "model"
    if args.code_only:
        changed = refresh_bundled_code(into)
        print(f"refreshed {', '.join(changed)} in {into}" if changed else f"the remote code in {into} was current")
        return 0
    if args.card_only:
        changed = refresh_bundled_card(args.repo_id, into)
        print(f"rendered {', '.join(changed)} in {into} again" if changed else f"the card in {into} was current")
        return 0
    folder = bundle(args.run, args.repo_id, into)
    print(f"bundled the model of {args.run} into {folder}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from music_genre.hub_card.publish import push

    staged = push(
        args.run,
        args.repo_id,
        dataset_repo_id=args.dataset_repo_id,
        space_repo_id=args.space_repo_id,
        private=args.private,
        stage_only=args.stage_only,
        endpoint=args.endpoint,
        data=args.data,
    )
    verb = "staged" if args.stage_only is not None else "pushed"
    for kind, folder in staged.items():
        print(f"{verb} the {kind} repo: {folder}")
    return 0
