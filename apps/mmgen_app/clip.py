"""The CLIP tab: zero-shot classification of an uploaded image against labels the user types,
and text -> image search over the folder given at start-up (``mmgen app --search-folder``).

API (``gradio_client``): ``/zero_shot`` and ``/search`` (see docs/app.md).
"""

from __future__ import annotations

import gradio as gr

from mmgen.clip.search import ImageIndex
from mmgen.clip.zero_shot import zero_shot
from mmgen.hub import model_dir
from mmgen_app.inputs import ImageInput, open_upload, whole
from mmgen_app.jobs import JOBS, user_errors
from mmgen_app.models import ModelStore

MAX_RESULTS = 50


class ClipTab:
    """Handlers of the tab. The search index is built once, at start-up or on first use."""

    def __init__(self, store: ModelStore):
        self.store, self.limits = store, store.config.limits
        self.folder = store.config.search_folder

    def zero_shot(self, image: str | None, labels: str, template: str
                  ) -> dict[str, float]:
        """Probabilities of the comma-separated ``labels`` for the image; ``template`` (one
        ``{}``) makes each label a caption."""
        if image is None:
            raise ValueError("Upload an image first.")
        names = [s.strip() for s in (labels or "").replace("\n", ",").split(",") if s.strip()]
        if len(names) < 2:
            raise ValueError("Type at least two labels, separated by commas.")
        if len(names) > self.limits.max_labels:
            raise ValueError(f"at most {self.limits.max_labels} labels on this server, got "
                             f"{len(names)}")
        template = template or "{}"
        if template.count("{}") != 1:
            raise ValueError("the template must contain {} once, where each label goes")
        model = self.store.clip()
        pixels = model.preprocess([open_upload(image, self.limits, "image")])
        probs = zero_shot(model, model.tokenize, pixels, names, (template,))[0]
        return {name: float(p) for name, p in zip(names, probs.tolist(), strict=True)}

    def index(self) -> ImageIndex:
        """The search index of the start-up folder (cached on disk by the library)."""
        if not self.folder:
            raise ValueError("this app was started without a search folder (mmgen app "
                             "--search-folder FOLDER)")

        def build() -> ImageIndex:
            directory = model_dir(self.store.config.clip_model)
            st = (directory / "model.safetensors").stat()
            model_id = f"{directory.resolve()}|{st.st_size}|{st.st_mtime_ns}"
            return ImageIndex(self.folder, self.store.clip(), model_id=model_id).build()

        return self.store.get("search-index", build)

    def search(self, query: str, top_k: float) -> list[tuple[str, str]]:
        """The ``top_k`` images of the folder that best match the text ``query``, as
        (file, "score  name") pairs."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("Type what to look for.")
        k = whole(top_k, "number of results", 1, MAX_RESULTS)
        hits = self.index().search(query.strip(), k=k)
        return [(hit.file, f"{hit.score:.3f}  {hit.file.rsplit('/', 1)[-1]}") for hit in hits]

    def build(self) -> None:
        """The tab's components and events (inside a ``gr.Blocks``)."""
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Zero-shot classification")
                image = ImageInput(self.limits, label="Image",
                                 elem_id="clip-image")
                labels = gr.Textbox(label="Labels (comma-separated)",
                                    value="red circle, blue square, green triangle",
                                    elem_id="clip-labels")
                template = gr.Textbox(label="Template", value="{}",
                                      info="each label is put where {} is")
                classify = gr.Button("Classify", variant="primary")
                scores = gr.Label(label="Probabilities", elem_id="clip-scores")
            with gr.Column():
                gr.Markdown(f"### Search {self.folder or '(no folder given at start-up)'}")
                query = gr.Textbox(label="Text query", elem_id="clip-query")
                top_k = gr.Slider(1, MAX_RESULTS, value=8, step=1, label="Results")
                search = gr.Button("Search", variant="primary", interactive=bool(self.folder))
                found = gr.Gallery(label="Found", columns=4, elem_id="clip-found")
        classify.click(user_errors(self.zero_shot), [image, labels, template], scores,
                       api_name="zero_shot", **JOBS)
        search.click(user_errors(self.search), [query, top_k], found, api_name="search", **JOBS)
