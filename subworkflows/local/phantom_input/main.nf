/*
 * Synthetic BraTS-like cases for the test profile: a training set and held-out cases, each a
 * case folder in BraTS space with its _seg (no pretrained weights ship, so the test trains).
 */
include { PHANTOM as PHANTOM_TRAIN   } from '../../../modules/local/phantom'
include { PHANTOM as PHANTOM_HELDOUT } from '../../../modules/local/phantom'

workflow PHANTOM_INPUT {
    take:
    n_train
    n_heldout

    main:
    PHANTOM_TRAIN(channel.of([id: 'train', n: n_train, seed: 0]))
    PHANTOM_HELDOUT(channel.of([id: 'heldout', n: n_heldout, seed: 1000]))

    train = PHANTOM_TRAIN.out.cases.flatMap { _meta, dirs -> toCases(dirs) }
    heldout = PHANTOM_HELDOUT.out.cases.flatMap { _meta, dirs -> toCases(dirs) }

    emit:
    train              = train.map { meta, dir -> caseFiles(meta, dir) }
    train_references   = train.map { meta, dir -> [meta, dir.resolve("${meta.id}_seg.nii.gz")] }
    heldout            = heldout.map { meta, dir -> caseFiles(meta, dir) }
    heldout_transforms = heldout.map { meta, _dir -> [meta, []] }
    heldout_references = heldout.map { meta, dir -> [meta, dir.resolve("${meta.id}_seg.nii.gz")] }
}

def toCases(dirs) {
    return (dirs instanceof List ? dirs : [dirs]).collect { dir -> [[id: dir.name, space: 'brats', label_convention: '2019'], dir] }
}

// [meta, t1, t1ce, t2, flair, brain mask ([]: phantoms have none)] of a phantom case folder.
def caseFiles(meta, dir) {
    def images = ['t1', 't1ce', 't2', 'flair'].collect { m -> dir.resolve("${meta.id}_${m}.nii.gz") }
    return [meta] + images + [[]]
}
