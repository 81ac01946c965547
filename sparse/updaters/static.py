"""`static`: a random mask at the start (uniform / ER / ERK densities), never changed."""
from sparse.updater import Updater, register

register(Updater)
