"""The web app: `genreshift serve` runs a FastAPI app (genreshift.web.app) whose page converts
uploaded songs through the same library functions as the CLI, in a bounded worker queue
(genreshift.web.jobs). FastAPI and uvicorn are imported only when the app is built."""
